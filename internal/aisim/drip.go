package aisim

import (
	"context"
	"net/http"
	"time"
)

// dripWriter holds back a body and sends it one byte at a time, every
// apart, after the handler returns; the headers go out at once.
type dripWriter struct {
	s     *Server
	w     http.ResponseWriter
	ctx   context.Context
	every time.Duration
	body  []byte
	wrote bool
}

func (d *dripWriter) Header() http.Header { return d.w.Header() }

func (d *dripWriter) WriteHeader(status int) {
	if d.wrote {
		return
	}
	d.wrote = true
	d.w.Header().Del("Content-Length")
	d.w.WriteHeader(status)
	_ = http.NewResponseController(d.w).Flush()
}

func (d *dripWriter) Write(b []byte) (int, error) {
	d.WriteHeader(http.StatusOK)
	d.body = append(d.body, b...)
	return len(b), nil
}

// Unwrap lets http.ResponseController reach the connection.
func (d *dripWriter) Unwrap() http.ResponseWriter { return d.w }

// Flush is a no-op: the body is sent by flush.
func (d *dripWriter) Flush() {}

func (d *dripWriter) flush() {
	d.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(d.w)
	for i := range d.body {
		if err := d.s.wait(d.ctx, d.every); err != nil {
			d.s.ended(d.w, err)
			return
		}
		if _, err := d.w.Write(d.body[i : i+1]); err != nil || rc.Flush() != nil {
			return
		}
	}
}
