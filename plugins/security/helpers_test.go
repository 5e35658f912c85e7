package security

import busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"

func busAnnounce(name string) *busv1.Announce { return &busv1.Announce{Name: name, Version: "1.0"} }
func busGoodbye(name string) *busv1.Goodbye   { return &busv1.Goodbye{Name: name, Reason: "shutdown"} }
