package store

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testMigs = []Migration{
	{Version: 1, SQL: `CREATE TABLE rec (ts INTEGER NOT NULL, body BLOB NOT NULL)`},
	{Version: 2, SQL: `CREATE INDEX rec_ts ON rec (ts)`},
}

func open(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestMigrateOncePerOwnerAndPersist(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "h.db")
	db := open(t, path)
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
	var cache int
	if err := db.QueryRow(`PRAGMA cache_size`).Scan(&cache); err != nil || cache != -512 {
		t.Fatalf("cache_size = %d, %v; want -512 (KiB)", cache, err)
	}
	for range 2 {
		if err := db.Migrate(ctx, "a", testMigs); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Migrate(ctx, "b", []Migration{{Version: 1, SQL: `CREATE TABLE other (x INTEGER)`}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO rec VALUES (1, x'00')`); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	db2 := open(t, path)
	if v, err := db2.Version(ctx, "a"); err != nil || v != 2 {
		t.Fatalf("version a = %d, %v", v, err)
	}
	if err := db2.Migrate(ctx, "a", testMigs); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db2.QueryRow(`SELECT COUNT(*) FROM rec`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows after reopen = %d, %v", n, err)
	}
	if err := db2.Migrate(ctx, "a", testMigs[:1]); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("older migration list: err = %v, want newer-schema error", err)
	}
}

func TestMigrateErrors(t *testing.T) {
	ctx := context.Background()
	db := open(t, ":memory:")
	for _, tc := range []struct {
		name string
		migs []Migration
		want string
	}{
		{"gap", []Migration{{Version: 2, SQL: "SELECT 1"}}, "want 1"},
		{"bad sql", []Migration{{Version: 1, SQL: "CREATE TABL x"}}, "migrate bad sql to 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := db.Migrate(ctx, tc.name, tc.migs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if v, _ := db.Version(ctx, "bad sql"); v != 0 {
		t.Fatalf("failed migration recorded as version %d", v)
	}
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(10_000, 0)
	for _, tc := range []struct {
		name string
		r    Retention
		keep []int // seconds of the rows kept
	}{
		{"age", Retention{MaxAge: 3500 * time.Second}, []int{7000, 8000, 9000}},
		{"rows", Retention{MaxRows: 2}, []int{8000, 9000}},
		{"bytes", Retention{SizeColumn: "body", MaxBytes: 25}, []int{8000, 9000}},
		{"all limits, tightest wins", Retention{MaxAge: time.Hour, MaxRows: 5, SizeColumn: "body", MaxBytes: 10}, []int{9000}},
		{"none", Retention{}, []int{1000, 5000, 7000, 8000, 9000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := open(t, ":memory:")
			if err := db.Migrate(ctx, "t", testMigs); err != nil {
				t.Fatal(err)
			}
			secs := []int{1000, 5000, 7000, 8000, 9000}
			for _, s := range secs {
				if _, err := db.Exec(`INSERT INTO rec VALUES (?, ?)`, time.Unix(int64(s), 0).UnixNano(), bytes.Repeat([]byte{1}, 10)); err != nil {
					t.Fatal(err)
				}
			}
			tc.r.Table, tc.r.TimeColumn = "rec", "ts"
			n, err := db.Prune(ctx, tc.r, now)
			if err != nil {
				t.Fatal(err)
			}
			if int(n) != len(secs)-len(tc.keep) {
				t.Errorf("deleted %d, want %d", n, len(secs)-len(tc.keep))
			}
			rows, err := db.Query(`SELECT ts FROM rec ORDER BY ts`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var got []int
			for rows.Next() {
				var ts int64
				_ = rows.Scan(&ts)
				got = append(got, int(ts/1e9))
			}
			if len(got) != len(tc.keep) {
				t.Fatalf("kept %v, want %v", got, tc.keep)
			}
			for i := range got {
				if got[i] != tc.keep[i] {
					t.Fatalf("kept %v, want %v", got, tc.keep)
				}
			}
		})
	}
}

func TestPruneRejectsBadIdentifiers(t *testing.T) {
	db := open(t, ":memory:")
	_, err := db.Prune(context.Background(), Retention{Table: "x; DROP TABLE y", TimeColumn: "ts", MaxRows: 1}, time.Now())
	if err == nil {
		t.Fatal("want an error for a bad table name")
	}
}

type xorCipher struct{ k byte }

func (c xorCipher) Seal(p, aad []byte) ([]byte, error) {
	out := append([]byte{byte(len(aad))}, p...)
	for i := 1; i < len(out); i++ {
		out[i] ^= c.k
	}
	return out, nil
}

func (c xorCipher) Open(s, aad []byte) ([]byte, error) {
	if len(s) == 0 || int(s[0]) != len(aad) {
		return nil, errors.New("auth failed")
	}
	out := append([]byte(nil), s[1:]...)
	for i := range out {
		out[i] ^= c.k
	}
	return out, nil
}

func TestSealUnseal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		c      Cipher
		sealed bool
	}{
		{"plain", nil, false},
		{"sealed", xorCipher{7}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, sealed, err := Seal(tc.c, []byte("hello"), []byte("aad"))
			if err != nil || sealed != tc.sealed {
				t.Fatalf("Seal: sealed=%v err=%v", sealed, err)
			}
			back, err := Unseal(tc.c, out, []byte("aad"), sealed)
			if err != nil || string(back) != "hello" {
				t.Fatalf("Unseal = %q, %v", back, err)
			}
		})
	}
	if _, err := Unseal(nil, []byte("x"), nil, true); !errors.Is(err, ErrNoCipher) {
		t.Fatalf("sealed without cipher: %v", err)
	}
}
