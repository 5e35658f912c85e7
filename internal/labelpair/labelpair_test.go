package labelpair

import "testing"

func TestSharedIsOnePairForANameAndValue(t *testing.T) {
	a, b := Shared("result", "success"), Shared("result", "success")
	if a != b {
		t.Fatal("two pairs for result=success")
	}
	if a.GetName() != "result" || a.GetValue() != "success" {
		t.Fatalf("pair %s=%s, want result=success", a.GetName(), a.GetValue())
	}
	if c := Shared("result", "failure"); c == a || c.GetValue() != "failure" {
		t.Fatalf("result=failure is %s=%s", c.GetName(), c.GetValue())
	}
	Shared("probe", "liveness")
	if n := testing.AllocsPerRun(100, func() { Shared("probe", "liveness") }); n != 0 {
		t.Errorf("finding a kept pair allocates %v times", n)
	}
}
