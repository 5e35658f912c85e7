package health_test

func childMain() bool { return false }
