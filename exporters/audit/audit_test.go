package audit

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/exporters/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRecordQueryPublishAndPersist(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.db")
	db, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var published []Record
	clock := time.Unix(1000, 0)
	l, err := start(ctx, db, Options{Publish: func(r Record) { mu.Lock(); published = append(published, r); mu.Unlock() }, Now: func() time.Time { clock = clock.Add(time.Second); return clock }})
	if err != nil {
		t.Fatal(err)
	}
	l.Record(Record{Actor: "ops", Action: "plugin.enable", Target: "validation"})
	l.Record(Record{Actor: "anonymous", Action: "http.denied", Target: "/api/v1/admin/reload", Outcome: OutcomeDenied, Remote: "10.0.0.1"})
	l.Record(Record{Action: "plugin.register", Target: "gpu_probe"})
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	l.Record(Record{Action: "late"})
	if l.Dropped() != 1 || l.Written() != 3 {
		t.Fatalf("dropped %d written %d", l.Dropped(), l.Written())
	}
	if len(published) != 3 || published[0].ID == 0 {
		t.Fatalf("published %+v", published)
	}
	_ = db.Close()

	db, err = store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l, err = start(ctx, db, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	for _, tc := range []struct {
		name string
		f    Filter
		want []string
	}{
		{"all", Filter{}, []string{"plugin.register", "http.denied", "plugin.enable"}},
		{"action prefix", Filter{Action: "plugin."}, []string{"plugin.register", "plugin.enable"}},
		{"exact action", Filter{Action: "plugin.enable"}, []string{"plugin.enable"}},
		{"outcome", Filter{Outcome: OutcomeDenied}, []string{"http.denied"}},
		{"actor default", Filter{Actor: "system"}, []string{"plugin.register"}},
		{"since", Filter{Since: time.Unix(1002, 0)}, []string{"plugin.register", "http.denied"}},
		{"limit", Filter{Limit: 1}, []string{"plugin.register"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := l.Query(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want actions %v", got, tc.want)
			}
			for i := range got {
				if got[i].Action != tc.want[i] {
					t.Fatalf("got %+v, want actions %v", got, tc.want)
				}
			}
		})
	}
}

// start is New followed by Start, as the security plugin does it.
func start(ctx context.Context, db *store.DB, o Options) (*Log, error) {
	l, err := New(ctx, db, o)
	if err != nil {
		return nil, err
	}
	l.Start()
	return l, nil
}
