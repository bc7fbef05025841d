package deploy_test

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	yamlv3 "gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// manifests are the objects of deploy/kubernetes, decoded strictly.
type manifests struct {
	namespaces      []corev1.Namespace
	serviceAccounts []corev1.ServiceAccount
	configMaps      []corev1.ConfigMap
	daemonSets      []appsv1.DaemonSet
	deployments     []appsv1.Deployment
	claims          []corev1.PersistentVolumeClaim
}

// decodeStrict decodes a YAML manifest into a k8s.io/api type as the API
// server's strict field validation (kubectl apply's default) does: YAML to
// JSON, then sigs.k8s.io/json, case-sensitive, refusing unknown and
// duplicate fields. (sigs.k8s.io/yaml's UnmarshalStrict goes through
// encoding/json, which would take "readOnlyRootFileSystem" for
// "readOnlyRootFilesystem".)
func decodeStrict(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(j, obj)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// readManifests decodes every document of every file in dir into its
// k8s.io/api type with decodeStrict: an unknown or misspelt field, a
// duplicate key or a value of the wrong type fails.
func readManifests(t *testing.T, dir string) manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	sort.Strings(files) // kubectl apply -f DIR applies them in this order
	var m manifests
	seen := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(b, []byte("\n---")) {
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s[%d]: %v", f, i, err)
			}
			var obj any
			switch tm.APIVersion + " " + tm.Kind {
			case "v1 Namespace":
				if len(m.configMaps)+len(m.daemonSets)+len(m.serviceAccounts)+len(m.deployments)+len(m.claims) > 0 {
					t.Errorf("%s: the Namespace must be applied before what it holds (files apply in name order)", f)
				}
				m.namespaces = append(m.namespaces, corev1.Namespace{})
				obj = &m.namespaces[len(m.namespaces)-1]
			case "v1 ServiceAccount":
				m.serviceAccounts = append(m.serviceAccounts, corev1.ServiceAccount{})
				obj = &m.serviceAccounts[len(m.serviceAccounts)-1]
			case "v1 ConfigMap":
				m.configMaps = append(m.configMaps, corev1.ConfigMap{})
				obj = &m.configMaps[len(m.configMaps)-1]
			case "apps/v1 DaemonSet":
				m.daemonSets = append(m.daemonSets, appsv1.DaemonSet{})
				obj = &m.daemonSets[len(m.daemonSets)-1]
			case "apps/v1 Deployment":
				m.deployments = append(m.deployments, appsv1.Deployment{})
				obj = &m.deployments[len(m.deployments)-1]
			case "v1 PersistentVolumeClaim":
				m.claims = append(m.claims, corev1.PersistentVolumeClaim{})
				obj = &m.claims[len(m.claims)-1]
			default:
				t.Fatalf("%s[%d]: apiVersion %q kind %q: not one this test knows", f, i, tm.APIVersion, tm.Kind)
			}
			if err := decodeStrict(doc, obj); err != nil {
				t.Errorf("%s[%d]: %s: %v", f, i, tm.Kind, err)
			}
			om := obj.(metav1.Object)
			key := tm.Kind + " " + om.GetNamespace() + "/" + om.GetName()
			if om.GetName() == "" || seen[key] {
				t.Errorf("%s[%d]: %s: no name, or defined twice", f, i, key)
			}
			seen[key] = true
		}
	}
	return m
}

func TestKubernetes(t *testing.T) {
	m := readManifests(t, filepath.Join("kubernetes"))
	if len(m.namespaces) != 1 || len(m.daemonSets) != 1 || len(m.serviceAccounts) != 1 {
		t.Fatalf("want one Namespace, ServiceAccount and DaemonSet; got %d, %d, %d",
			len(m.namespaces), len(m.serviceAccounts), len(m.daemonSets))
	}
	ns := m.namespaces[0]
	if ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("Namespace %s: pod-security.kubernetes.io/enforce=%q: baseline forbids hostPID, hostNetwork and these capabilities", ns.Name, ns.Labels["pod-security.kubernetes.io/enforce"])
	}
	ds, cm, sa := m.daemonSets[0], m.configMap(t, "cnstream"), m.serviceAccounts[0]
	for _, o := range []metav1.Object{&ds, &cm, &sa} {
		if o.GetNamespace() != ns.Name {
			t.Errorf("%s is in namespace %q, want %q", o.GetName(), o.GetNamespace(), ns.Name)
		}
	}

	spec := ds.Spec.Template.Spec
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("DaemonSet selector %v does not select its pods' labels %v (%v)", ds.Spec.Selector, ds.Spec.Template.Labels, err)
	}
	if !spec.HostPID || !spec.HostNetwork {
		t.Errorf("hostPID %v, hostNetwork %v: both must be true (the initial pid and network namespaces)", spec.HostPID, spec.HostNetwork)
	}
	if spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("dnsPolicy %q: want ClusterFirstWithHostNet, to resolve Services from the host network", spec.DNSPolicy)
	}
	if spec.ServiceAccountName != sa.Name {
		t.Errorf("serviceAccountName %q, the manifests define %q", spec.ServiceAccountName, sa.Name)
	}
	everywhere := false
	for _, tol := range spec.Tolerations {
		everywhere = everywhere || (tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == "")
	}
	if !everywhere {
		t.Errorf("tolerations %v: want one with operator Exists and no key, to run on every node", spec.Tolerations)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]

	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("container has no securityContext.capabilities")
	}
	added := map[corev1.Capability]bool{}
	for _, a := range sc.Capabilities.Add {
		added[a] = true
	}
	if !added["NET_ADMIN"] || !added["SYS_PTRACE"] || len(added) != 2 {
		t.Errorf("capabilities add %v: want NET_ADMIN and SYS_PTRACE only", sc.Capabilities.Add)
	}
	if len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("capabilities drop %v: want [ALL]", sc.Capabilities.Drop)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: it needs two capabilities, not all")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem: want true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation: want false")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Error("runAsUser: want 0: the added capabilities are the container root's (no ambient capabilities for other users)")
	}
	if sc.AppArmorProfile == nil || sc.AppArmorProfile.Type != corev1.AppArmorProfileTypeUnconfined {
		t.Error("appArmorProfile: want Unconfined: the runtime's default profile refuses ptrace read access to the node's processes")
	}

	// Resources: bounded memory, no CPU limit.
	lim, req := c.Resources.Limits, c.Resources.Requests
	mem := lim.Memory()
	if mem.IsZero() || mem.Cmp(resource.MustParse("128Mi")) < 0 || mem.Cmp(resource.MustParse("1Gi")) > 0 {
		t.Errorf("memory limit %v: want one, between 128Mi and 1Gi", mem)
	}
	if req.Memory().IsZero() || req.Cpu().IsZero() || req.Memory().Cmp(*mem) > 0 {
		t.Errorf("requests %v: want cpu and memory, memory within the limit %v", req, mem)
	}
	if _, ok := lim[corev1.ResourceCPU]; ok {
		t.Error("a CPU limit: a throttled reader makes the kernel drop events")
	}
	envs := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			envs[e.Name] = e.Value
		}
	}
	if gml := envs["GOMEMLIMIT"]; gml != "" {
		q, err := resource.ParseQuantity(strings.TrimSuffix(gml, "B"))
		if err != nil || q.Cmp(*mem) >= 0 {
			t.Errorf("GOMEMLIMIT %s: want below the memory limit %v (%v)", gml, mem, err)
		}
	}

	// The configuration: the ConfigMap's key at the path the args name.
	var conf string
	for i, a := range c.Args {
		if a == "--config" && i+1 < len(c.Args) {
			conf = c.Args[i+1]
		}
	}
	if len(c.Args) == 0 || c.Args[0] != "run" || conf == "" {
		t.Fatalf("args %q: want run --config FILE", c.Args)
	}
	text, ok := "", false
	for _, vm := range c.VolumeMounts {
		if filepath.Dir(conf) != vm.MountPath {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == vm.Name && v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
				text, ok = cm.Data[filepath.Base(conf)]
			}
		}
	}
	if !ok {
		t.Fatalf("--config %s: no key %s of ConfigMap %s mounted at %s", conf, filepath.Base(conf), cm.Name, filepath.Dir(conf))
	}
	validateText(t, "cnstream.yaml", text, envs)
	// KAFKA_BROKERS is documented as host:port[,host:port...]: the config
	// must take a list too.
	twoBrokers := maps.Clone(envs)
	twoBrokers["KAFKA_BROKERS"] = "b1:9092,b2:9092"
	validateText(t, "cnstream.yaml", text, twoBrokers)
	cfg := parseConfig(t, "ConfigMap "+cm.Name, []byte(text))
	host, port := listenAddr(t, cfg.Telemetry.Listen, envs)
	if host != "0.0.0.0" && host != "" && host != "::" {
		t.Errorf("telemetry.listen %q: the kubelet probes the pod's (the node's) address: want 0.0.0.0", cfg.Telemetry.Listen)
	}
	for _, f := range []string{"/etc/passwd", "/etc/group", "/etc/machine-id"} {
		if !hostFileMounted(spec, c, f) {
			t.Errorf("%s: want the node's, from a hostPath of type File, mounted read-only", f)
		}
	}

	// Probes and scraping on the telemetry port.
	portNum := func(p intstr.IntOrString) string {
		if p.Type == intstr.Int {
			return strconv.Itoa(p.IntValue())
		}
		for _, cp := range c.Ports {
			if cp.Name == p.StrVal {
				return strconv.Itoa(int(cp.ContainerPort))
			}
		}
		return "no port named " + p.StrVal
	}
	for name, pr := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{"livenessProbe": {c.LivenessProbe, "/healthz"}, "readinessProbe": {c.ReadinessProbe, "/readyz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet of %s", name, pr.path)
			continue
		}
		if g := pr.probe.HTTPGet; g.Path != pr.path || portNum(g.Port) != port {
			t.Errorf("%s: GET %s on port %s, want %s on %s (telemetry.listen)", name, g.Path, portNum(g.Port), pr.path, port)
		}
	}
	ann := ds.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != port || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("pod annotations %v: want prometheus.io/scrape true, port %s, path /metrics", ann, port)
	}
}

func hostFileMounted(spec corev1.PodSpec, c corev1.Container, path string) bool {
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != path || !vm.ReadOnly {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == vm.Name && v.HostPath != nil && v.HostPath.Path == path &&
				v.HostPath.Type != nil && *v.HostPath.Type == corev1.HostPathFile {
				return true
			}
		}
	}
	return false
}

// configMap returns the ConfigMap named name.
func (m manifests) configMap(t *testing.T, name string) corev1.ConfigMap {
	t.Helper()
	for _, cm := range m.configMaps {
		if cm.Name == name {
			return cm
		}
	}
	t.Fatalf("no ConfigMap %q", name)
	return corev1.ConfigMap{}
}

// TestKubernetesArchiver: the fleet archiver's Deployment (40-archiver.yaml):
// cnstream archive with the ConfigMap's configuration, which validates; no
// host namespace and no capability; a non-root, read-only container; one
// ReadWriteMany claim shared by every replica, mounted at archiver.dir; the
// signer key from a Secret, read-only, at archiver.key; probes and scrape
// annotations on telemetry.listen's port; the DaemonSet's topic.
func TestKubernetesArchiver(t *testing.T) {
	m := readManifests(t, filepath.Join("kubernetes"))
	if len(m.deployments) != 1 || len(m.claims) != 1 {
		t.Fatalf("want one Deployment and one PersistentVolumeClaim; got %d, %d", len(m.deployments), len(m.claims))
	}
	d, pvc := m.deployments[0], m.claims[0]
	ns := m.namespaces[0].Name
	if d.Namespace != ns || pvc.Namespace != ns {
		t.Errorf("Deployment in %q, claim in %q: want %q", d.Namespace, pvc.Namespace, ns)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("Deployment selector %v does not select its pods' labels %v (%v)", d.Spec.Selector, d.Spec.Template.Labels, err)
	}
	dsSel, _ := metav1.LabelSelectorAsSelector(m.daemonSets[0].Spec.Selector)
	if dsSel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("the DaemonSet's selector %v selects the archiver's pods %v", m.daemonSets[0].Spec.Selector, d.Spec.Template.Labels)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 1 {
		t.Errorf("replicas %v: want at least 1", d.Spec.Replicas)
	}
	if !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany) || pvc.Spec.Resources.Requests.Storage().IsZero() {
		t.Errorf("claim %s: access modes %v, storage %v: want ReadWriteMany (replicas take over each other's host archives) and a size",
			pvc.Name, pvc.Spec.AccessModes, pvc.Spec.Resources.Requests.Storage())
	}
	spec := d.Spec.Template.Spec
	if spec.HostPID || spec.HostNetwork {
		t.Error("hostPID or hostNetwork: the archiver reads Kafka and writes files, it needs neither")
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	psc, sc := spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 || psc.FSGroup == nil {
		t.Error("pod securityContext: want runAsNonRoot, a non-zero runAsUser and an fsGroup (the volume writable by it)")
	}
	if sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 || !slices.Contains(sc.Capabilities.Drop, "ALL") ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container securityContext %+v: want every capability dropped, none added, a read-only root, no privilege escalation", sc)
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Error("no memory limit")
	}

	// The configuration.
	if len(c.Args) != 3 || c.Args[0] != "archive" || c.Args[1] != "--config" {
		t.Fatalf("args %q: want archive --config FILE", c.Args)
	}
	cm := m.configMap(t, "cnstream-archiver")
	var text string
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == c.Args[2] && vm.ReadOnly {
			for _, v := range spec.Volumes {
				if v.Name == vm.Name && v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
					text = cm.Data[vm.SubPath]
				}
			}
		}
	}
	if text == "" {
		t.Fatalf("--config %s: not a key of ConfigMap %s mounted read-only there", c.Args[2], cm.Name)
	}
	envs := map[string]string{}
	for _, e := range c.Env {
		envs[e.Name] = e.Value
	}
	validateText(t, "archiver.yaml", text, envs)
	var conf struct {
		Archiver struct {
			Topic, Dir, Key string
		} `yaml:"archiver"`
		Telemetry struct {
			Listen string `yaml:"listen"`
		} `yaml:"telemetry"`
	}
	if err := yamlv3.Unmarshal([]byte(text), &conf); err != nil {
		t.Fatal(err)
	}
	daemonConf := parseConfig(t, "ConfigMap cnstream", []byte(m.configMap(t, "cnstream").Data["cnstream.yaml"]))
	if k := daemonConf.Sinks[0].Kafka; k == nil || k.Topic != conf.Archiver.Topic {
		t.Errorf("archiver.topic %q: the DaemonSet's kafka sink writes %+v", conf.Archiver.Topic, k)
	}
	mounted := func(path string, check func(v corev1.Volume) bool) bool {
		for _, vm := range c.VolumeMounts {
			if vm.MountPath == path || strings.HasPrefix(path, vm.MountPath+"/") {
				for _, v := range spec.Volumes {
					if v.Name == vm.Name && check(v) {
						return vm.ReadOnly == (path != conf.Archiver.Dir)
					}
				}
			}
		}
		return false
	}
	if !mounted(conf.Archiver.Dir, func(v corev1.Volume) bool {
		return v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == pvc.Name
	}) {
		t.Errorf("archiver.dir %s: want the claim %s mounted there, writable", conf.Archiver.Dir, pvc.Name)
	}
	if !mounted(conf.Archiver.Key, func(v corev1.Volume) bool { return v.Secret != nil }) {
		t.Errorf("archiver.key %s: want a Secret mounted read-only there", conf.Archiver.Key)
	}
	_, port := listenAddr(t, conf.Telemetry.Listen, envs)
	var metricsPort string
	for _, p := range c.Ports {
		if p.Name == "metrics" {
			metricsPort = strconv.Itoa(int(p.ContainerPort))
		}
	}
	if metricsPort != port {
		t.Errorf("port metrics %s, telemetry.listen's port %s", metricsPort, port)
	}
	for name, pr := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{"livenessProbe": {c.LivenessProbe, "/healthz"}, "readinessProbe": {c.ReadinessProbe, "/readyz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil || pr.probe.HTTPGet.Path != pr.path || pr.probe.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s: want an httpGet of %s on port metrics", name, pr.path)
		}
	}
	ann := d.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != port || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("pod annotations %v: want prometheus.io/scrape true, port %s, path /metrics", ann, port)
	}
}
