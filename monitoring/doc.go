// Package monitoring holds the Prometheus alerting rules
// (prometheus/reflex-alerts.yml, with promtool unit tests in
// prometheus/reflex-alerts_test.yml) and the Grafana dashboard
// (grafana/reflex-dashboard.json) for services that use reflex; README.md
// explains each alert and what to do. It has no Go API: its tests check
// the files with promtool, check that every expression names only
// metrics that reflex registers, that every alert has a runbook entry in
// README.md and unit tests where it fires and where it does not, and run
// the demo with a real Prometheus scraping it and evaluating the rules.
package monitoring
