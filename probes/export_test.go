package probes

// ErrorClasses returns every non-empty class, in a stable order, for the
// tests that go over all of them.
func ErrorClasses() []ErrorClass {
	return []ErrorClass{ClassTimeout, ClassRefused, ClassReset, ClassHTTP5xx, ClassHTTP4xx,
		ClassAuth, ClassBadResponse, ClassTLS, ClassDNS, ClassCanceled, ClassStuck, ClassNotReady, ClassCold, ClassAsleep, ClassNotSent, ClassStale,
		ClassReported, ClassOther}
}
