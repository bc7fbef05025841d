// Package deploy holds no code: it is the home of the files that run
// cnstream outside a shell (the systemd unit in systemd/, the Kubernetes
// manifests in kubernetes/, the compose stack's Prometheus and Grafana
// files in compose/ and grafana/) and of the tests that check them, and the
// repository root's Dockerfile, .dockerignore and docker-compose.yml,
// without a Docker engine or a cluster:
//
//   - Dockerfile: its build stage's go build, run on the context that
//     .dockerignore leaves, gives a static binary; every file it copies is in
//     the context; its command names the configuration it bakes in, which
//     validates.
//   - docker-compose.yml: loaded and validated against the compose schema by
//     the compose-go loader (the library of Docker Compose), then the host
//     namespaces and capabilities of cnstream, Kafka's listeners as each
//     client reaches them, Prometheus' target and Grafana's provisioning;
//     the fleet archiver (profile archiver): its configuration, listener,
//     topic, volumes and scrape target.
//   - systemd: systemd-analyze verify without a warning, systemd-analyze
//     security's exposure, and the unit's capabilities tried for real: a
//     non-root cnstream with only those subscribes, forces its receive
//     buffer and reads exe and cwd of a root process.
//   - Kubernetes: every manifest decoded strictly into the k8s.io/api types
//     (an unknown or misspelt field fails), then hostPID, hostNetwork,
//     capabilities, probes and scrape port against the ConfigMap's
//     configuration, which validates; the fleet archiver's Deployment
//     (40-archiver.yaml): no host namespace or capability, a ReadWriteMany
//     claim at archiver.dir, the key from a Secret, the DaemonSet's topic.
//   - Grafana: every metric and label the dashboard's queries use is in a
//     real scrape of cnstream run.
//
// Every configuration is checked by the cnstream binary's validate command.
// The tests need root (the connector, setpriv) and systemd-analyze.
package deploy
