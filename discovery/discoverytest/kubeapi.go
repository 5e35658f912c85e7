package discoverytest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KubeAPI is an HTTP server on loopback that speaks the part of the
// Kubernetes API that client-go's informers use for pods, services and
// endpointslices: list (JSON, with a resourceVersion), watch from a
// resourceVersion (a chunked stream of ADDED, MODIFIED and DELETED
// events), and watch-list (sendInitialEvents: the current objects as
// ADDED, then the bookmark that ends them), in all namespaces or one.
// It does not filter by label or field selector.
type KubeAPI struct {
	URL string
	srv *httptest.Server

	mu      sync.Mutex
	rv      int
	objects map[string]map[string][]byte // resource -> namespace/name -> object JSON
	events  []event
	changed chan struct{} // closed on every change
	failing bool
	closing chan struct{}
	lists   map[string]int
}

type event struct {
	rv       int
	resource string
	ns       string
	typ      string
	obj      []byte
}

// Resources the fake serves.
const (
	Pods           = "pods"
	Services       = "services"
	EndpointSlices = "endpointslices"
)

// NewKubeAPI starts a KubeAPI, closed when the test ends.
func NewKubeAPI(t testing.TB) *KubeAPI {
	k := &KubeAPI{objects: map[string]map[string][]byte{}, changed: make(chan struct{}), rv: 100,
		closing: make(chan struct{}), lists: map[string]int{}}
	k.srv = httptest.NewServer(http.HandlerFunc(k.serve))
	k.URL = k.srv.URL
	t.Cleanup(k.Close)
	return k
}

// Close ends open watches and stops the server.
func (k *KubeAPI) Close() {
	k.mu.Lock()
	select {
	case <-k.closing:
	default:
		close(k.closing)
	}
	k.mu.Unlock()
	k.srv.Close()
}

// Fail makes every request answer 500 (and ends open watches) while on.
func (k *KubeAPI) Fail(on bool) {
	k.mu.Lock()
	k.failing = on
	k.bump()
	k.mu.Unlock()
	if on {
		k.srv.CloseClientConnections()
	}
}

// Lists returns how many list or watch-list requests a resource had.
func (k *KubeAPI) Lists(resource string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lists[resource]
}

// Apply adds an object or replaces the one of its namespace and name:
// a *corev1.Pod, *corev1.Service or *discoveryv1.EndpointSlice.
func (k *KubeAPI) Apply(obj any) { k.change(obj, false) }

// Delete removes an object.
func (k *KubeAPI) Delete(obj any) { k.change(obj, true) }

func (k *KubeAPI) change(obj any, del bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rv++
	resource, meta := k.stamp(obj)
	meta.ResourceVersion = strconv.Itoa(k.rv)
	b, err := json.Marshal(obj)
	if err != nil {
		panic(err)
	}
	key := meta.Namespace + "/" + meta.Name
	if k.objects[resource] == nil {
		k.objects[resource] = map[string][]byte{}
	}
	_, existed := k.objects[resource][key]
	typ := "ADDED"
	switch {
	case del:
		typ = "DELETED"
		delete(k.objects[resource], key)
	case existed:
		typ = "MODIFIED"
		k.objects[resource][key] = b
	default:
		k.objects[resource][key] = b
	}
	k.events = append(k.events, event{rv: k.rv, resource: resource, ns: meta.Namespace, typ: typ, obj: b})
	k.bump()
}

func (k *KubeAPI) bump() {
	close(k.changed)
	k.changed = make(chan struct{})
}

// stamp sets an object's kind and API version and returns its resource.
func (k *KubeAPI) stamp(obj any) (string, *metav1.ObjectMeta) {
	switch o := obj.(type) {
	case *corev1.Pod:
		o.TypeMeta = metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}
		return Pods, &o.ObjectMeta
	case *corev1.Service:
		o.TypeMeta = metav1.TypeMeta{Kind: "Service", APIVersion: "v1"}
		return Services, &o.ObjectMeta
	case *discoveryv1.EndpointSlice:
		o.TypeMeta = metav1.TypeMeta{Kind: "EndpointSlice", APIVersion: "discovery.k8s.io/v1"}
		return EndpointSlices, &o.ObjectMeta
	}
	panic(fmt.Sprintf("discoverytest: KubeAPI cannot serve %T", obj))
}

var kinds = map[string][2]string{
	Pods:           {"Pod", "v1"},
	Services:       {"Service", "v1"},
	EndpointSlices: {"EndpointSlice", "discovery.k8s.io/v1"},
}

// route parses /api/v1[/namespaces/NS]/RESOURCE and
// /apis/discovery.k8s.io/v1[/namespaces/NS]/RESOURCE.
func route(path string) (resource, ns string, ok bool) {
	var rest string
	switch {
	case strings.HasPrefix(path, "/api/v1/"):
		rest = strings.TrimPrefix(path, "/api/v1/")
	case strings.HasPrefix(path, "/apis/discovery.k8s.io/v1/"):
		rest = strings.TrimPrefix(path, "/apis/discovery.k8s.io/v1/")
	default:
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 1:
		resource = parts[0]
	case len(parts) == 3 && parts[0] == "namespaces":
		ns, resource = parts[1], parts[2]
	default:
		return "", "", false
	}
	_, known := kinds[resource]
	return resource, ns, known
}

func (k *KubeAPI) serve(w http.ResponseWriter, r *http.Request) {
	resource, ns, ok := route(r.URL.Path)
	if !ok || r.Method != http.MethodGet {
		status(w, http.StatusNotFound, "NotFound", r.URL.Path+" is not served")
		return
	}
	k.mu.Lock()
	failing := k.failing
	k.mu.Unlock()
	if failing {
		status(w, http.StatusInternalServerError, "InternalError", "failing on purpose")
		return
	}
	q := r.URL.Query()
	if q.Get("watch") == "true" || q.Get("watch") == "1" {
		k.watch(w, r, resource, ns, q.Get("sendInitialEvents") == "true", q.Get("resourceVersion"))
		return
	}
	k.mu.Lock()
	k.lists[resource]++
	items, rv := k.snapshot(resource, ns)
	k.mu.Unlock()
	kind := kinds[resource]
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"kind": kind[0] + "List", "apiVersion": kind[1],
		"metadata": map[string]string{"resourceVersion": strconv.Itoa(rv)},
		"items":    items,
	})
}

// snapshot returns the objects of a resource in ns ("" for all), by key.
// Called with k.mu held.
func (k *KubeAPI) snapshot(resource, ns string) ([]json.RawMessage, int) {
	keys := make([]string, 0, len(k.objects[resource]))
	for key := range k.objects[resource] {
		if ns == "" || strings.HasPrefix(key, ns+"/") {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	items := make([]json.RawMessage, 0, len(keys))
	for _, key := range keys {
		items = append(items, k.objects[resource][key])
	}
	return items, k.rv
}

func (k *KubeAPI) watch(w http.ResponseWriter, r *http.Request, resource, ns string, initial bool, fromRV string) {
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	send := func(typ string, obj json.RawMessage) bool {
		if err := enc.Encode(map[string]any{"type": typ, "object": obj}); err != nil {
			return false
		}
		if fl != nil {
			fl.Flush()
		}
		return true
	}
	k.mu.Lock()
	next := 0 // index in k.events of the next event to send
	if initial {
		k.lists[resource]++
		items, rv := k.snapshot(resource, ns)
		next = len(k.events)
		k.mu.Unlock()
		for _, it := range items {
			if !send("ADDED", it) {
				return
			}
		}
		kind := kinds[resource]
		bookmark, _ := json.Marshal(map[string]any{
			"kind": kind[0], "apiVersion": kind[1],
			"metadata": map[string]any{
				"resourceVersion": strconv.Itoa(rv),
				"annotations":     map[string]string{metav1.InitialEventsAnnotationKey: "true"},
			},
		})
		if !send("BOOKMARK", bookmark) {
			return
		}
	} else {
		from, _ := strconv.Atoi(fromRV)
		for next < len(k.events) && k.events[next].rv <= from {
			next++
		}
		k.mu.Unlock()
	}
	for {
		k.mu.Lock()
		if k.failing {
			k.mu.Unlock()
			return
		}
		var batch []event
		for ; next < len(k.events); next++ {
			if e := k.events[next]; e.resource == resource && (ns == "" || e.ns == ns) {
				batch = append(batch, e)
			}
		}
		changed := k.changed
		k.mu.Unlock()
		for _, e := range batch {
			if !send(e.typ, e.obj) {
				return
			}
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		case <-k.closing:
			return
		}
	}
}

func status(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": msg, "reason": reason, "code": code,
	})
}
