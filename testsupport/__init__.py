"""The real processes the tests and the benchmarks run, in one place.

- `waiting`: wait for a condition or a port, bounded.
- `processes`: a child process in a group of its own (`Child`), a set of them stopped together
  (`Processes`), free ports, the CPU and memory of a process tree, the threads of one waiting on a port.
- `nats`: a JetStream nats-server alone (`NatsServer`) or three clustered (`NatsCluster`).
- `postgres`: a PostgreSQL cluster of the test's own (`PostgresServer`).
- `netns`: a network namespace joined by a veth pair, for blackholes (`Netns`).
- `service`: the service's own processes: its environment, `migrate`, the API server (granian or
  gunicorn) and the worker (`run_listeners`).
- `http`: the auth service's session cookie, raw HTTP framing, timed requests, a scrape of /metrics.

These modules import nothing from Django, so `bench/` uses them outside any settings. What needs the
test run's Django settings lives in `testsupport.testrun` (the in-process worker, the service's environment
with the run's keys and that of a `run_listeners` on the test database, the JetStream client, a pull consumer
bound as the worker binds it, the test database's URL).
"""
