package deploy_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"
)

// loadCompose loads docker-compose.yml as `docker compose config` does:
// the compose-go loader, which validates it against the Compose
// specification's JSON schema, interpolates ${VAR:-default} (with an empty
// environment here, so the defaults are checked) and resolves paths.
func loadCompose(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(abs, "docker-compose.yml")},
		cli.WithWorkingDirectory(abs), cli.WithEnv(nil), cli.WithConsistency(true), cli.WithProfiles(profiles))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml: no service %q (have %v)", name, p.ServiceNames())
	}
	return s
}

// env returns a service's environment with the unset entries left out.
func env(s types.ServiceConfig) map[string]string {
	m := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			m[k] = *v
		}
	}
	return m
}

// bindSource returns the host path mounted at target in s, or "".
func bindSource(s types.ServiceConfig, target string) (types.ServiceVolumeConfig, bool) {
	for _, v := range s.Volumes {
		if v.Target == target {
			return v, true
		}
	}
	return types.ServiceVolumeConfig{}, false
}

// flagValue returns the word after flag in args, or "".
func flagValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// publishes reports whether s publishes port on the host's loopback (or on
// every address), to the same port in the container.
func publishes(s types.ServiceConfig, port string) bool {
	for _, p := range s.Ports {
		if p.Published == port && strconv.Itoa(int(p.Target)) == port && (p.HostIP == "127.0.0.1" || p.HostIP == "" || p.HostIP == "0.0.0.0") {
			return true
		}
	}
	return false
}

// kafkaListeners parses "NAME://host:port,..." into name: host:port.
func kafkaListeners(t *testing.T, v string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, l := range strings.Split(v, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(l), "://")
		if !ok {
			t.Fatalf("listener %q: want NAME://host:port", l)
		}
		m[name] = addr
	}
	return m
}

func TestCompose(t *testing.T) {
	p := loadCompose(t)
	if p.Name != "cnstream" {
		t.Errorf("project name %q, want cnstream", p.Name)
	}
	want := []string{"cnstream", "grafana", "kafka", "kafka-init", "kcat", "nats", "prometheus"}
	if got := p.ServiceNames(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("services %v, want %v", got, want)
	}
	for _, v := range []string{"kafka-data", "nats-data", "prometheus-data", "grafana-data"} {
		if _, ok := p.Volumes[v]; !ok {
			t.Errorf("no volume %s (docker compose down -v must remove every piece of state)", v)
		}
	}

	// cnstream: the host's namespaces, the capabilities, its configuration.
	cn := service(t, p, "cnstream")
	if cn.NetworkMode != "host" {
		t.Errorf("cnstream: network_mode %q: the connector socket exists only in the host's network namespace", cn.NetworkMode)
	}
	if cn.Pid != "host" {
		t.Errorf("cnstream: pid %q: only processes in the initial pid namespace are heard", cn.Pid)
	}
	if cn.Cgroup != "host" {
		t.Errorf("cnstream: cgroup %q: /proc/PID/cgroup must show the host's paths to recognise containers", cn.Cgroup)
	}
	for _, c := range []string{"NET_ADMIN", "SYS_PTRACE"} {
		if !contains(cn.CapAdd, c) {
			t.Errorf("cnstream: cap_add %v lacks %s", cn.CapAdd, c)
		}
	}
	if !contains(cn.CapDrop, "ALL") || len(cn.CapAdd) != 2 {
		t.Errorf("cnstream: cap_drop %v, cap_add %v: want ALL dropped and only NET_ADMIN and SYS_PTRACE added", cn.CapDrop, cn.CapAdd)
	}
	if !contains(cn.SecurityOpt, "apparmor=unconfined") {
		t.Errorf("cnstream: security_opt %v: docker-default's AppArmor profile refuses ptrace read access to the host's processes", cn.SecurityOpt)
	}
	if cn.Privileged {
		t.Error("cnstream: privileged: it needs two capabilities, not all")
	}
	if cn.Build == nil || filepath.Clean(cn.Build.Context) != filepath.Clean(mustAbs(t, root)) {
		t.Errorf("cnstream: build %+v: want the repository root (Dockerfile)", cn.Build)
	}
	cenv := env(cn)
	m, ok := bindSource(cn, "/etc/cnstream/cnstream.yaml")
	if !ok || m.Type != types.VolumeTypeBind || !m.ReadOnly {
		t.Fatalf("cnstream: want its configuration bind-mounted read-only at /etc/cnstream/cnstream.yaml (the image's CMD), got %+v", m)
	}
	validate(t, m.Source, cenv)
	conf := readConfig(t, m.Source)
	for _, f := range []string{"/etc/passwd", "/etc/group", "/etc/machine-id"} {
		v, ok := bindSource(cn, f)
		if !ok || v.Source != f || !v.ReadOnly || v.Bind == nil || bool(v.Bind.CreateHostPath) {
			t.Errorf("cnstream: want the host's %s bind-mounted read-only, without creating it, got %+v", f, v)
		}
	}
	if dep, ok := cn.DependsOn["kafka-init"]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("cnstream: depends_on kafka-init %+v: want service_completed_successfully (the topic exists)", dep)
	}
	if dep, ok := cn.DependsOn["nats"]; !ok || dep.Condition != types.ServiceConditionHealthy {
		t.Errorf("cnstream: depends_on nats %+v: want service_healthy", dep)
	}

	// Kafka: every client is sent an address it can reach.
	kafka := service(t, p, "kafka")
	kenv := env(kafka)
	listeners := kafkaListeners(t, kenv["KAFKA_LISTENERS"])
	advertised := kafkaListeners(t, kenv["KAFKA_ADVERTISED_LISTENERS"])
	for name, addr := range advertised {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("KAFKA_ADVERTISED_LISTENERS %s: %v", name, err)
		}
		if l, ok := listeners[name]; !ok || !strings.HasSuffix(l, ":"+port) {
			t.Errorf("advertised listener %s://%s: KAFKA_LISTENERS has %q", name, addr, l)
		}
	}
	ctl := kenv["KAFKA_CONTROLLER_LISTENER_NAMES"]
	if _, ok := advertised[ctl]; ok || listeners[ctl] == "" {
		t.Errorf("controller listener %q: want it in KAFKA_LISTENERS and not advertised", ctl)
	}
	voter := kenv["KAFKA_CONTROLLER_QUORUM_VOTERS"]
	_, ctlPort, _ := net.SplitHostPort(listeners[ctl])
	if want := kenv["KAFKA_NODE_ID"] + "@" + kafka.Name + ":" + ctlPort; voter != want {
		t.Errorf("KAFKA_CONTROLLER_QUORUM_VOTERS %q, want %q", voter, want)
	}
	if !strings.Contains(kenv["KAFKA_PROCESS_ROLES"], "broker") || !strings.Contains(kenv["KAFKA_PROCESS_ROLES"], "controller") {
		t.Errorf("KAFKA_PROCESS_ROLES %q: want broker,controller (KRaft, one node)", kenv["KAFKA_PROCESS_ROLES"])
	}
	if !strings.HasPrefix(kafka.Image, "apache/kafka:") {
		t.Errorf("kafka: image %s, want the official apache/kafka", kafka.Image)
	}
	// cnstream, on the host network, reaches a listener advertised on the
	// host's loopback through the port Kafka publishes there.
	brokers := expand(conf.Sinks[sinkIndex(t, conf, "kafka")].Kafka.Brokers[0], cenv)
	hostListener := ""
	for name, addr := range advertised {
		if addr == brokers {
			hostListener = name
		}
	}
	if bh, bp, _ := net.SplitHostPort(brokers); hostListener == "" || bh != "127.0.0.1" || !publishes(kafka, bp) {
		t.Errorf("cnstream's Kafka brokers %q: want an advertised listener (%v) on 127.0.0.1 whose port kafka publishes (%+v)", brokers, advertised, kafka.Ports)
	}
	// kcat and kafka-init, on the compose network, use a listener advertised
	// under the service's name.
	internal := ""
	for name, addr := range advertised {
		if h, _, _ := net.SplitHostPort(addr); h == kafka.Name {
			internal = advertised[name]
		}
	}
	if internal == "" {
		t.Fatalf("no listener advertised as %s:PORT for the compose network (%v)", kafka.Name, advertised)
	}
	topic := conf.Sinks[sinkIndex(t, conf, "kafka")].Kafka.Topic
	kcat := service(t, p, "kcat")
	if kcat.NetworkMode == "host" {
		t.Error("kcat: on the host network it cannot resolve kafka")
	}
	if b, tp := flagValue(kcat.Command, "-b"), flagValue(kcat.Command, "-t"); b != internal || tp != topic || !contains(kcat.Command, "-C") {
		t.Errorf("kcat: command %q: want -C -b %s -t %s", kcat.Command, internal, topic)
	}
	init := strings.Join(service(t, p, "kafka-init").Command, " ")
	if !strings.Contains(init, "--bootstrap-server "+internal) || !strings.Contains(init, "--topic "+topic) {
		t.Errorf("kafka-init: %q: want --bootstrap-server %s --topic %s", init, internal, topic)
	}

	// NATS with JetStream, reached the same way.
	nats := service(t, p, "nats")
	if !contains(nats.Command, "-js") {
		t.Errorf("nats: command %q: want -js (JetStream)", nats.Command)
	}
	u, err := url.Parse(expand(conf.Sinks[sinkIndex(t, conf, "nats")].NATS.URL, cenv))
	if err != nil || u.Hostname() != "127.0.0.1" || !publishes(nats, u.Port()) {
		t.Errorf("cnstream's NATS URL %v: want 127.0.0.1 and a port nats publishes (%+v)", u, nats.Ports)
	}

	// Prometheus scrapes the address cnstream listens on.
	prom := service(t, p, "prometheus")
	if prom.NetworkMode != "host" {
		t.Errorf("prometheus: network_mode %q: it scrapes cnstream on the host's loopback", prom.NetworkMode)
	}
	pm, ok := bindSource(prom, "/etc/prometheus/prometheus.yml")
	if !ok || flagValue(prom.Command, "--config.file") != pm.Target {
		t.Fatalf("prometheus: want --config.file=/etc/prometheus/prometheus.yml from a mounted file (%q)", prom.Command)
	}
	var pc struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	b, err := os.ReadFile(pm.Source)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &pc); err != nil {
		t.Fatalf("%s: %v", pm.Source, err)
	}
	lhost, lport := listenAddr(t, conf.Telemetry.Listen, cenv)
	var targets []string
	for _, sc := range pc.ScrapeConfigs {
		if sc.JobName == "cnstream" && (sc.MetricsPath == "" || sc.MetricsPath == "/metrics") {
			for _, s := range sc.StaticConfigs {
				targets = append(targets, s.Targets...)
			}
		}
	}
	if len(targets) != 1 {
		t.Fatalf("%s: job cnstream: targets %v, want one", pm.Source, targets)
	}
	thost, tport, err := net.SplitHostPort(targets[0])
	if err != nil || tport != lport || (thost != lhost && lhost != "0.0.0.0") {
		t.Errorf("%s: target %s, but cnstream listens on %s:%s (telemetry.listen %q)", pm.Source, targets[0], lhost, lport, conf.Telemetry.Listen)
	}

	// Grafana: the provisioned data source is that Prometheus, the
	// provisioned dashboards are mounted where the provider looks.
	graf := service(t, p, "grafana")
	if graf.NetworkMode != "host" {
		t.Errorf("grafana: network_mode %q: it reads Prometheus on the host's loopback", graf.NetworkMode)
	}
	prov, ok := bindSource(graf, "/etc/grafana/provisioning")
	if !ok {
		t.Fatal("grafana: no /etc/grafana/provisioning mount")
	}
	var ds struct {
		Datasources []struct {
			UID, Type, URL string
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(prov.Source, "datasources", "prometheus.yaml"), &ds)
	promURL := "http://" + flagValue(prom.Command, "--web.listen-address")
	if len(ds.Datasources) != 1 || ds.Datasources[0].URL != promURL || ds.Datasources[0].Type != "prometheus" {
		t.Errorf("grafana data sources %+v: want one, prometheus at %s (prometheus --web.listen-address)", ds.Datasources, promURL)
	}
	var dp struct {
		Providers []struct {
			Type    string
			Options struct{ Path string }
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(prov.Source, "dashboards", "cnstream.yaml"), &dp)
	if len(dp.Providers) != 1 || dp.Providers[0].Type != "file" {
		t.Fatalf("grafana dashboard providers %+v: want one, of type file", dp.Providers)
	}
	dash, ok := bindSource(graf, dp.Providers[0].Options.Path)
	if !ok {
		t.Fatalf("grafana: the dashboard provider reads %s, which is not mounted", dp.Providers[0].Options.Path)
	}
	home := env(graf)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
	rel, err := filepath.Rel(dash.Target, home)
	if err != nil || strings.HasPrefix(rel, "..") {
		t.Fatalf("grafana: home dashboard %s is not under %s", home, dash.Target)
	}
	d := readDashboard(t, filepath.Join(dash.Source, rel))
	if d.dsVar != ds.Datasources[0].UID {
		t.Errorf("dashboard's data source variable defaults to %q, the provisioned data source's uid is %q", d.dsVar, ds.Datasources[0].UID)
	}
}

func sinkIndex(t *testing.T, c config, typ string) int {
	t.Helper()
	for i, s := range c.Sinks {
		if s.Type == typ {
			return i
		}
	}
	t.Fatalf("configuration has no %s sink", typ)
	return -1
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestComposeArchiver: the archiver service (profile archiver, off by
// default): cnstream archive with examples/fleet-archiver.yaml, which
// validates with the service's environment; on the compose network,
// reading the Kafka listener advertised there and the topic cnstream
// writes; no capability, a read-only root; its dir and key on a named
// volume (down -v removes them); its telemetry published on the host's
// loopback and scraped by Prometheus.
func TestComposeArchiver(t *testing.T) {
	if _, ok := loadCompose(t).Services["archiver"]; ok {
		t.Error("archiver: started by a plain docker compose up; want it in a profile (its key is made first)")
	}
	p := loadCompose(t, "archiver")
	a := service(t, p, "archiver")
	if !contains(a.Profiles, "archiver") {
		t.Errorf("archiver: profiles %v, want [archiver]", a.Profiles)
	}
	if a.NetworkMode == "host" || len(a.CapAdd) > 0 || !contains(a.CapDrop, "ALL") || !a.ReadOnly || a.Privileged {
		t.Errorf("archiver: network_mode %q, cap_add %v, cap_drop %v, read_only %v: want the compose network, no capability, a read-only root",
			a.NetworkMode, a.CapAdd, a.CapDrop, a.ReadOnly)
	}
	if len(a.Command) != 3 || a.Command[0] != "archive" || a.Command[1] != "--config" {
		t.Fatalf("archiver: command %q, want archive --config FILE", a.Command)
	}
	m, ok := bindSource(a, a.Command[2])
	if !ok || m.Type != types.VolumeTypeBind || !m.ReadOnly {
		t.Fatalf("archiver: want its configuration bind-mounted read-only at %s, got %+v", a.Command[2], m)
	}
	aenv := env(a)
	validate(t, m.Source, aenv)
	var conf struct {
		Archiver struct {
			Brokers []string `yaml:"brokers"`
			Topic   string   `yaml:"topic"`
			Dir     string   `yaml:"dir"`
			Key     string   `yaml:"key"`
		} `yaml:"archiver"`
		Telemetry struct {
			Listen string `yaml:"listen"`
		} `yaml:"telemetry"`
	}
	readYAML(t, m.Source, &conf)
	kenv := env(service(t, p, "kafka"))
	brokers := expand(conf.Archiver.Brokers[0], aenv)
	internal := false
	for _, addr := range kafkaListeners(t, kenv["KAFKA_ADVERTISED_LISTENERS"]) {
		internal = internal || (addr == brokers && strings.HasPrefix(addr, "kafka:"))
	}
	if !internal {
		t.Errorf("archiver: brokers %q: want the listener advertised on the compose network (kafka:PORT)", brokers)
	}
	cn := readConfig(t, mustBind(t, service(t, p, "cnstream"), "/etc/cnstream/cnstream.yaml"))
	if topic := cn.Sinks[sinkIndex(t, cn, "kafka")].Kafka.Topic; conf.Archiver.Topic != topic {
		t.Errorf("archiver: topic %q, cnstream writes %q", conf.Archiver.Topic, topic)
	}
	for _, path := range []string{expand(conf.Archiver.Dir, aenv), expand(conf.Archiver.Key, aenv)} {
		found := false
		for _, v := range a.Volumes {
			if v.Type == types.VolumeTypeVolume && (path == v.Target || strings.HasPrefix(path, v.Target+"/")) {
				_, declared := p.Volumes[v.Source]
				found = declared && !v.ReadOnly
			}
		}
		if !found {
			t.Errorf("archiver: %s is not on a declared, writable named volume", path)
		}
	}
	_, port := listenAddr(t, conf.Telemetry.Listen, aenv)
	if !publishes(a, port) {
		t.Errorf("archiver: telemetry port %s not published on the host's loopback (%+v)", port, a.Ports)
	}
	var pc struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, mustBind(t, service(t, p, "prometheus"), "/etc/prometheus/prometheus.yml"), &pc)
	scraped := false
	for _, sc := range pc.ScrapeConfigs {
		for _, s := range sc.StaticConfigs {
			scraped = scraped || (sc.JobName == "cnstream-archive" && contains(s.Targets, "127.0.0.1:"+port))
		}
	}
	if !scraped {
		t.Errorf("prometheus: no job cnstream-archive scraping 127.0.0.1:%s", port)
	}
}

// mustBind returns the host path bind-mounted at target in s.
func mustBind(t *testing.T, s types.ServiceConfig, target string) string {
	t.Helper()
	v, ok := bindSource(s, target)
	if !ok {
		t.Fatalf("%s: nothing mounted at %s", s.Name, target)
	}
	return v.Source
}
