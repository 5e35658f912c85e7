package agent

// Order is plan's start order, for the tests of ordering.
func Order(plugins []Metadata, provided map[string]string, host []string) ([]string, error) {
	order, _, err := plan(plugins, provided, host)
	return order, err
}
