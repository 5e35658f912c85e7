package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// CipherService is the name of the container service whose value
// implements Cipher; the encryption plugin provides it, and plugins that
// seal records look it up by this name.
const CipherService = "encryption"

// Cipher seals and opens records at rest. The encryption plugin's service
// implements it; aad binds a ciphertext to where it is stored (a table and
// a row key, say) so that a record moved elsewhere fails to open.
type Cipher interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(ciphertext, aad []byte) ([]byte, error)
}

// DB is an open store. Its methods are safe for concurrent use; SQLite
// serializes writers, and WAL lets readers run beside the writer.
type DB struct {
	*sql.DB
	path string
}

// Open opens (creating if needed) the SQLite file at path, with its
// directory, in WAL mode with a busy timeout and normal synchronous writes.
// ":memory:" opens a private in-memory database (one connection).
//
// The file is the agent's alone, whatever the umask and the directory's
// mode: Open creates it 0600 and takes group and other bits off a file
// (and its -wal and -shm) that has them, since stored logs and audit
// records are nobody else's to read. SQLite gives the -wal and -shm files
// it creates the mode of the database file. A directory the agent cannot
// write is an error naming the directory, its mode and the user.
//
// Each connection caches at most 512 KiB of pages (SQLite's default is
// 2 MiB) and one connection stays open when idle: the stores append and
// read recent rows, the operating system caches the file anyway, and an
// agent with three stores kept about 3 MiB more resident with the
// defaults.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("store: empty path")
	}
	dsn := ":memory:"
	if path != ":memory:" {
		if err := prepareFile(path); err != nil {
			return nil, err
		}
		dsn = "file:" + (&url.URL{Path: path}).EscapedPath()
	}
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(5000)", "synchronous(NORMAL)", "foreign_keys(ON)", "cache_size(-512)"} {
		q.Add("_pragma", p)
	}
	q.Add("_txlock", "immediate")
	sdb, err := sql.Open("sqlite", dsn+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	if path == ":memory:" {
		sdb.SetMaxOpenConns(1)
	} else {
		sdb.SetMaxOpenConns(4)
		sdb.SetMaxIdleConns(1)
	}
	if err := sdb.PingContext(ctx); err != nil {
		_ = sdb.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	db := &DB{DB: sdb, path: path}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS store_migrations (
		owner TEXT NOT NULL, version INTEGER NOT NULL, applied_at INTEGER NOT NULL,
		PRIMARY KEY (owner, version))`); err != nil {
		_ = sdb.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	return db, nil
}

// FileMode is the mode of every store file.
const FileMode fs.FileMode = 0o600

// prepareFile makes path's directory (0700) and the file (FileMode), and
// takes group and other bits off the file, its -wal and its -shm, so that
// SQLite, which gives the files it creates the database file's mode,
// never makes one another user can read.
func prepareFile(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store %s: create directory: %w", path, permissionHint(err, dir))
	}
	// SQLite needs to create the -wal and -shm files beside the database.
	if err := writable(dir); err != nil {
		return fmt.Errorf("store %s: %w", path, permissionHint(err, dir))
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, FileMode)
	if err != nil {
		return fmt.Errorf("store %s: %w", path, permissionHint(err, path))
	}
	_ = f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil && fi.Mode().Perm()&^FileMode != 0 {
			err = os.Chmod(p, fi.Mode().Perm()&FileMode)
		}
		if err != nil {
			return fmt.Errorf("store %s: make %s private: %w", path, p, err)
		}
	}
	return nil
}

// writable reports whether the agent can create files in dir.
func writable(dir string) error {
	if err := syscall.Access(dir, 0x2 /* W_OK */); err != nil {
		return &fs.PathError{Op: "create files in", Path: dir, Err: err}
	}
	return nil
}

// permissionHint adds to a permission error the mode of what and the user
// the agent runs as: what an operator needs to fix it.
func permissionHint(err error, what string) error {
	if !errors.Is(err, fs.ErrPermission) && !errors.Is(err, syscall.EROFS) {
		return err
	}
	mode := "unknown mode"
	if fi, serr := os.Stat(what); serr == nil {
		mode = "mode " + fi.Mode().String()
	} else if fi, serr := os.Stat(filepath.Dir(what)); serr == nil {
		mode = filepath.Dir(what) + " has mode " + fi.Mode().String()
	}
	return fmt.Errorf("%w (%s; the agent runs as uid %d, gid %d)", err, mode, os.Geteuid(), os.Getegid())
}

// Path returns the file the store was opened from.
func (db *DB) Path() string { return db.path }

// Migration is one schema step of an owner. Versions start at 1 and are
// applied in order, each once, in its own transaction.
type Migration struct {
	Version int
	SQL     string
}

// Migrate applies the owner's migrations that the file has not seen yet.
// A version the file has that the list lacks (a newer agent wrote the
// file) is an error rather than a guess.
func (db *DB) Migrate(ctx context.Context, owner string, migs []Migration) error {
	var have int
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM store_migrations WHERE owner = ?`, owner).Scan(&have); err != nil {
		return fmt.Errorf("store %s: migrate %s: %w", db.path, owner, err)
	}
	latest := 0
	for i, m := range migs {
		if m.Version != i+1 {
			return fmt.Errorf("store: migrate %s: migration %d has version %d, want %d", owner, i, m.Version, i+1)
		}
		latest = m.Version
	}
	if have > latest {
		return fmt.Errorf("store %s: schema of %s is at version %d, newer than this agent's %d", db.path, owner, have, latest)
	}
	for _, m := range migs[have:] {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("store %s: migrate %s to %d: %w", db.path, owner, m.Version, err)
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("store %s: migrate %s to %d: %w", db.path, owner, m.Version, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO store_migrations (owner, version, applied_at) VALUES (?, ?, ?)`, owner, m.Version, time.Now().Unix()); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("store %s: migrate %s to %d: %w", db.path, owner, m.Version, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("store %s: migrate %s to %d: %w", db.path, owner, m.Version, err)
		}
	}
	return nil
}

// Version returns the owner's schema version in the file (0: none).
func (db *DB) Version(ctx context.Context, owner string) (int, error) {
	var v int
	err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM store_migrations WHERE owner = ?`, owner).Scan(&v)
	return v, err
}

// Retention bounds one table. Rows are ordered by TimeColumn, a Unix time
// in nanoseconds; the oldest go first. Zero limits are off.
type Retention struct {
	Table      string
	TimeColumn string
	// MaxAge drops rows older than now minus MaxAge.
	MaxAge time.Duration
	// MaxRows keeps the newest MaxRows rows.
	MaxRows int64
	// SizeColumn and MaxBytes keep the newest rows whose SizeColumn
	// lengths add up to at most MaxBytes.
	SizeColumn string
	MaxBytes   int64
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (r Retention) check() error {
	for _, id := range []string{r.Table, r.TimeColumn} {
		if !identRE.MatchString(id) {
			return fmt.Errorf("store: retention: bad identifier %q", id)
		}
	}
	if r.MaxBytes > 0 && !identRE.MatchString(r.SizeColumn) {
		return fmt.Errorf("store: retention: bad size column %q", r.SizeColumn)
	}
	return nil
}

// Prune applies r as of now and returns how many rows it deleted.
func (db *DB) Prune(ctx context.Context, r Retention, now time.Time) (int64, error) {
	if err := r.check(); err != nil {
		return 0, err
	}
	var total int64
	exec := func(q string, args ...any) error {
		res, err := db.ExecContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("store %s: prune %s: %w", db.path, r.Table, err)
		}
		n, _ := res.RowsAffected()
		total += n
		return nil
	}
	if r.MaxAge > 0 {
		if err := exec(fmt.Sprintf(`DELETE FROM %s WHERE %s < ?`, r.Table, r.TimeColumn), now.Add(-r.MaxAge).UnixNano()); err != nil {
			return total, err
		}
	}
	if r.MaxRows > 0 {
		q := fmt.Sprintf(`DELETE FROM %[1]s WHERE rowid IN (SELECT rowid FROM %[1]s ORDER BY %[2]s DESC, rowid DESC LIMIT -1 OFFSET ?)`, r.Table, r.TimeColumn)
		if err := exec(q, r.MaxRows); err != nil {
			return total, err
		}
	}
	if r.MaxBytes > 0 {
		q := fmt.Sprintf(`DELETE FROM %[1]s WHERE rowid IN (
			SELECT rowid FROM (SELECT rowid, SUM(length(%[3]s)) OVER (ORDER BY %[2]s DESC, rowid DESC) AS cum FROM %[1]s)
			WHERE cum > ?)`, r.Table, r.TimeColumn, r.SizeColumn)
		if err := exec(q, r.MaxBytes); err != nil {
			return total, err
		}
	}
	return total, nil
}

// Close checkpoints the WAL into the main file and closes the database.
func (db *DB) Close() error {
	_, _ = db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	return db.DB.Close()
}

// SizeBytes returns the size of the database file and its WAL.
func (db *DB) SizeBytes() int64 {
	if db.path == ":memory:" {
		return 0
	}
	var n int64
	for _, p := range []string{db.path, db.path + "-wal"} {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}
