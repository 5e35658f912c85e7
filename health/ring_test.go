package health

import (
	"fmt"
	"testing"
)

func TestRingKeepsTheLastN(t *testing.T) {
	for _, tt := range []struct {
		n, adds int
		want    string
	}{
		{3, 0, "[]"}, {3, 2, "[1 2]"}, {3, 3, "[1 2 3]"}, {3, 5, "[3 4 5]"}, {3, 7, "[5 6 7]"}, {1, 4, "[4]"},
	} {
		r := newRing[int](tt.n)
		for i := 1; i <= tt.adds; i++ {
			r.add(i)
		}
		if got := fmt.Sprint(r.items()); got != tt.want {
			t.Errorf("n=%d after %d adds: %s, want %s", tt.n, tt.adds, got, tt.want)
		}
		if len(r.buf) > tt.n {
			t.Errorf("n=%d: buffer grew to %d", tt.n, len(r.buf))
		}
	}
}
