package e2etest_test

import (
	"os"
	"testing"

	"github.com/vitals-dev/vitals/e2e/e2etest"
)

func TestProcOfSelf(t *testing.T) {
	if _, err := e2etest.ProcCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	st, err := e2etest.ProcStatus(os.Getpid())
	if err != nil || st.VmRSS == 0 || st.VmHWM < st.VmRSS {
		t.Fatalf("status %+v, %v: want a resident size within its peak", st, err)
	}
	if _, err := e2etest.ProcCPU(-1); err == nil {
		t.Fatal("no error for a process that cannot exist")
	}
}
