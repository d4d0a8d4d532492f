package chart

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/strvals"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The chart's README is checked against the chart: its install commands run
// (in a model of helm and kubectl, rendering the chart for every helm
// command), its table of release names is rendered, and its uninstall
// commands delete what the chart leaves behind.

// readmeSection returns the README's section under heading (a whole line,
// "## Install"), up to the next heading of the same or a higher level.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	level := headingLevel(heading)
	lines := strings.Split(string(b), "\n")
	i := slices.Index(lines, heading)
	if i < 0 {
		t.Fatalf("the README has no section %q", heading)
	}
	var out []string
	fenced := false // in a code block, where "# " starts a comment
	for _, l := range lines[i+1:] {
		if strings.HasPrefix(l, "```") {
			fenced = !fenced
		}
		if n := headingLevel(l); !fenced && n > 0 && n <= level {
			break
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// headingLevel is the level of a Markdown heading line ("### x": 3), 0 for
// another line.
func headingLevel(line string) int {
	n := len(line) - len(strings.TrimLeft(line, "#"))
	if n == 0 || !strings.HasPrefix(line[n:], " ") {
		return 0
	}
	return n
}

// shellBlocks returns the ```sh blocks of text, each as its commands: lines
// joined at a trailing backslash, comments and blank lines dropped.
func shellBlocks(text string) [][]string {
	var blocks [][]string
	var cur []string
	in := false
	pending := ""
	for _, l := range strings.Split(text, "\n") {
		switch {
		case !in && strings.TrimSpace(l) == "```sh":
			in, cur = true, nil
		case in && strings.TrimSpace(l) == "```":
			in = false
			blocks = append(blocks, cur)
		case in:
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			if s, ok := strings.CutSuffix(l, `\`); ok {
				pending += s + " "
				continue
			}
			cur = append(cur, pending+l)
			pending = ""
		}
	}
	return blocks
}

// plainWorkloads are the workloads' names in deploy/, which the README's
// install commands must give (release podiam), so that moving between the
// plain manifests and helm keeps every object.
var plainWorkloads = []string{"podiam-webhook", "podiam-auth", "podiam-agent", "podiam-issuer-sync", "podiam-sts"}

// cluster is what the README's commands change: namespaces and their labels,
// helm releases, and which release owns each object. The cluster's Pod
// Security default applies to namespaces without the enforce label;
// kube-system is exempt, as clusters exempt it.
type cluster struct {
	namespaces map[string]map[string]string // name: labels
	releases   map[string]bool              // namespace/name
	owners     map[string]string            // kind/namespace/name: namespace/name of its release
	psDefault  string
	// plainNames requires every workload to have its name of the plain
	// manifests (release podiam), as the README's install commands must.
	plainNames bool
}

// newCluster returns a cluster with kube-system and the namespaces given
// (name: labels), enforcing psDefault where no label says otherwise.
func newCluster(psDefault string, namespaces map[string]map[string]string) *cluster {
	c := &cluster{namespaces: map[string]map[string]string{"kube-system": {}}, releases: map[string]bool{}, owners: map[string]string{}, psDefault: psDefault}
	for n, l := range namespaces {
		c.namespaces[n] = map[string]string{}
		maps.Copy(c.namespaces[n], l)
	}
	return c
}

// runScript runs commands in order, stopping at the first that fails, as a
// shell with `set -e` would.
func (c *cluster) runScript(commands []string) error {
	for _, cmd := range commands {
		if err := c.run(cmd); err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
	}
	return nil
}

// run runs one command line: a helm or kubectl command, or the one pipeline
// the README uses to create a namespace unless it exists.
func (c *cluster) run(line string) error {
	stages := strings.Split(line, "|")
	if len(stages) == 2 {
		create, apply := strings.Fields(stages[0]), strings.Fields(stages[1])
		if len(create) >= 4 && slices.Equal(create[:3], []string{"kubectl", "create", "namespace"}) && slices.Contains(create, "--dry-run=client") &&
			slices.Equal(apply, []string{"kubectl", "apply", "-f", "-"}) {
			if c.namespaces[create[3]] == nil {
				c.namespaces[create[3]] = map[string]string{}
			}
			return nil
		}
	}
	if len(stages) != 1 {
		return errors.New("a pipeline this test does not know")
	}
	args := strings.Fields(line)
	switch {
	case len(args) == 4 && slices.Equal(args[:3], []string{"kubectl", "create", "namespace"}):
		if c.namespaces[args[3]] != nil {
			return fmt.Errorf("namespaces %q already exists", args[3])
		}
		c.namespaces[args[3]] = map[string]string{}
		return nil
	case len(args) >= 5 && slices.Equal(args[:3], []string{"kubectl", "label", "namespace"}):
		return c.label(args[3], args[4:])
	case len(args) >= 2 && args[0] == "helm":
		return c.helm(args[1:])
	}
	return errors.New("a command this test does not know")
}

// label is kubectl label namespace: without --overwrite, a label that has
// another value is refused.
func (c *cluster) label(ns string, args []string) error {
	labels := c.namespaces[ns]
	if labels == nil {
		return fmt.Errorf("namespaces %q not found", ns)
	}
	overwrite := slices.Contains(args, "--overwrite")
	for _, a := range args {
		if a == "--overwrite" {
			continue
		}
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("argument %q this test does not know", a)
		}
		if cur, found := labels[k]; found && cur != v && !overwrite {
			return fmt.Errorf("'%s' already has a value (%s), and --overwrite is false", k, cur)
		}
		labels[k] = v
	}
	return nil
}

// helm is helm install or helm upgrade --install of charts/podiam: the
// release's rendering must take no object of another release, the agent
// needs a namespace whose Pod Security allows it, and with plainNames the
// workloads must have the plain manifests' names.
func (c *cluster) helm(args []string) error {
	var (
		upgrade, install, createNS bool
		pos                        []string
		ns                         = "default"
		values                     = map[string]any{}
	)
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s without a value", a)
			}
			i++
			return args[i], nil
		}
		switch {
		case i == 0 && (a == "install" || a == "upgrade"):
			upgrade = a == "upgrade"
			install = a == "install"
		case a == "--install" && upgrade:
			install = true
		case a == "--create-namespace":
			createNS = true
		case a == "--namespace" || a == "-n":
			v, err := next()
			if err != nil {
				return err
			}
			ns = v
		case a == "--set":
			v, err := next()
			if err != nil {
				return err
			}
			if err := strvals.ParseInto(v, values); err != nil {
				return fmt.Errorf("--set %s: %w", v, err)
			}
		case strings.HasPrefix(a, "-"):
			return fmt.Errorf("flag %s this test does not know", a)
		default:
			pos = append(pos, a)
		}
	}
	if !install || len(pos) != 2 || pos[1] != "charts/podiam" {
		return errors.New("not helm install or helm upgrade --install of charts/podiam with a release name")
	}
	release := pos[0]
	id := ns + "/" + release
	if c.releases[id] && !upgrade {
		return fmt.Errorf("cannot re-use a name that is still in use (release %s)", id)
	}
	if c.namespaces[ns] == nil {
		if !createNS {
			return fmt.Errorf("namespaces %q not found", ns)
		}
		c.namespaces[ns] = map[string]string{}
	}
	out, err := RenderRelease(release, ns, values)
	if err != nil {
		return err
	}
	objs, err := Objects(out)
	if err != nil {
		return err
	}
	// An upgrade replaces the release's objects with the new rendering's.
	maps.DeleteFunc(c.owners, func(_, owner string) bool { return owner == id })
	for _, o := range objs {
		key := o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
		if owner, ok := c.owners[key]; ok {
			return fmt.Errorf("%s exists and cannot be imported into the current release: it belongs to release %s", key, owner)
		}
		c.owners[key] = id
		if k := o.GetKind(); c.plainNames && (k == "Deployment" || k == "DaemonSet") && !slices.Contains(plainWorkloads, o.GetName()) {
			return fmt.Errorf("renders %s %s, not one of the plain manifests' names %v", k, o.GetName(), plainWorkloads)
		}
		if hostNet, _, _ := unstructured.NestedBool(o.Object, "spec", "template", "spec", "hostNetwork"); hostNet {
			level := c.namespaces[ns]["pod-security.kubernetes.io/enforce"]
			if level == "" {
				level = c.psDefault
			}
			if ns != "kube-system" && level != "privileged" {
				return fmt.Errorf("%s %s needs Pod Security privileged, namespace %s enforces %s", o.GetKind(), o.GetName(), ns, level)
			}
		}
	}
	c.releases[id] = true
	return nil
}

// startStates are the clusters the README's install blocks must work on:
// fresh ones enforcing privileged or restricted by default, and one whose
// podiam-system namespace exists, labelled restricted.
func startStates() map[string]func() *cluster {
	plain := func(c *cluster) *cluster { c.plainNames = true; return c }
	return map[string]func() *cluster{
		"fresh":                 func() *cluster { return plain(newCluster("privileged", nil)) },
		"restricted by default": func() *cluster { return plain(newCluster("restricted", nil)) },
		"namespace labelled restricted": func() *cluster {
			return plain(newCluster("privileged", map[string]map[string]string{ReleaseNamespace: {"pod-security.kubernetes.io/enforce": "restricted"}}))
		},
	}
}

// TestReadmeInstall runs each install block of the README (each one an
// alternative) on each start state, twice: a block must work as it is and
// again, as an upgrade.
func TestReadmeInstall(t *testing.T) {
	// The blocks before the section's first subsection.
	intro, _, _ := strings.Cut(readmeSection(t, "## Install"), "\n### ")
	blocks := shellBlocks(intro)
	if len(blocks) < 3 {
		t.Fatalf("the README's Install section has %d sh blocks, want the alternatives A, B and C", len(blocks))
	}
	for i, b := range blocks {
		for name, start := range startStates() {
			t.Run(fmt.Sprintf("block %d/%s", i+1, name), func(t *testing.T) {
				c := start()
				for run := 1; run <= 2; run++ {
					if err := c.runScript(b); err != nil {
						t.Fatalf("run %d: %v", run, err)
					}
				}
			})
		}
	}
}

// TestClusterModel checks that the model of TestReadmeInstall finds each
// fault the README's commands once had, and accepts what works.
func TestClusterModel(t *testing.T) {
	const (
		up     = "helm upgrade --install podiam charts/podiam --namespace podiam-system"
		agent  = " --set auth.enabled=true,auth.clusterName=c,auth.region=eu-west-1,agent.enabled=true"
		ensure = "kubectl create namespace podiam-system --dry-run=client -o yaml | kubectl apply -f -"
		label  = "kubectl label namespace podiam-system pod-security.kubernetes.io/enforce=privileged"
		eks    = " charts/podiam --namespace kube-system --set webhook.enabled=false,crds.install=false --set agent.enabled=true,agent.backend=eks,agent.clusterName=c"
	)
	for _, tc := range []struct {
		name    string
		start   string
		script  []string
		wantErr string // "" for none
	}{
		{"create namespace after --create-namespace", "fresh", []string{up + " --create-namespace", "kubectl create namespace podiam-system"}, "already exists"},
		{"second helm install", "fresh", []string{"helm install podiam charts/podiam -n podiam-system --create-namespace", "helm install podiam charts/podiam -n podiam-system"}, "still in use"},
		{"label without --overwrite", "namespace labelled restricted", []string{label}, "--overwrite is false"},
		{"label with --overwrite", "namespace labelled restricted", []string{label + " --overwrite"}, ""},
		{"no namespace", "fresh", []string{up}, "not found"},
		{"agent in a restricted namespace", "restricted by default", []string{up + " --create-namespace" + agent}, "needs Pod Security privileged"},
		{"agent in a labelled namespace", "restricted by default", []string{ensure, label, up + agent, ensure, label, up + agent}, ""},
		{"release podiam-agent", "fresh", []string{"helm upgrade --install podiam-agent" + eks}, "podiam-agent-agent"},
		{"release podiam on EKS", "fresh", []string{"helm upgrade --install podiam" + eks}, ""},
		{"one release name in two namespaces", "fresh", []string{up + " --create-namespace", "helm upgrade --install podiam charts/podiam -n other --create-namespace"}, "belongs to release podiam-system/podiam"},
		{"unknown flag", "fresh", []string{up + " --wait"}, "does not know"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := startStates()[tc.start]().runScript(tc.script)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one with %q", err, tc.wantErr)
			}
		})
	}
}

// backticked matches `code` spans.
var backticked = regexp.MustCompile("`([^`]+)`")

// TestReadmeReleaseNames renders each release of the README's table of
// release names and checks that it gives the objects the table says, and
// that releases the README says collide do: one name in two namespaces,
// and NAME next to NAME-podiam.
func TestReadmeReleaseNames(t *testing.T) {
	values := map[string]any{"auth": map[string]any{"enabled": true, "clusterName": "c"}, "agent": map[string]any{"enabled": true}}
	rows := 0
	for _, l := range strings.Split(readmeSection(t, "### Release names"), "\n") {
		cells := strings.Split(l, "|")
		if len(cells) != 4 {
			continue
		}
		rel := backticked.FindStringSubmatch(cells[1])
		if rel == nil {
			continue // the header or the separator
		}
		rows++
		t.Run(rel[1], func(t *testing.T) {
			out, err := RenderRelease(rel[1], "names-test", values)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := Objects(out)
			if err != nil {
				t.Fatal(err)
			}
			have := map[string]bool{}
			for _, o := range objs {
				have[o.GetName()] = true
			}
			names := backticked.FindAllStringSubmatch(cells[2], -1)
			if len(names) == 0 {
				t.Fatalf("the row of %s names no object", rel[1])
			}
			for _, n := range names {
				if !have[n[1]] {
					t.Errorf("release %s renders no object %s (has %v)", rel[1], n[1], slices.Sorted(maps.Keys(have)))
				}
			}
		})
	}
	if rows < 2 {
		t.Fatalf("the README's release names table has %d rows", rows)
	}
	for _, pair := range [][2]string{{"podiam", "podiam"}, {"staging", "staging-podiam"}} {
		t.Run("collision/"+pair[0]+"/"+pair[1], func(t *testing.T) {
			c := newCluster("privileged", map[string]map[string]string{"ns-a": nil, "ns-b": nil})
			err := c.runScript([]string{
				"helm install " + pair[0] + " charts/podiam -n ns-a",
				"helm install " + pair[1] + " charts/podiam -n ns-b",
			})
			if err == nil || !strings.Contains(err.Error(), "belongs to release ns-a/"+pair[0]) {
				t.Errorf("error %v, want the second release refused", err)
			}
		})
	}
}

// TestReadmeUninstall checks that the README's uninstall commands delete
// every Secret and ConfigMap of the release that the chart does not render
// but the components' RBAC or cert-manager's Certificates name: those
// created at run time, which helm uninstall leaves.
func TestReadmeUninstall(t *testing.T) {
	deleted := map[string][]string{} // kind: names
	blocks := shellBlocks(readmeSection(t, "### Uninstall"))
	for _, b := range blocks {
		for _, cmd := range b {
			args := strings.Fields(cmd)
			i := slices.Index(args, "delete")
			if args[0] != "kubectl" || i < 0 || i+1 >= len(args) {
				continue
			}
			for _, a := range args[i+2:] {
				if !strings.HasPrefix(a, "-") {
					deleted[args[i+1]] = append(deleted[args[i+1]], a)
				}
			}
		}
	}
	for _, mode := range []string{"self-managed", "cert-manager"} {
		t.Run(mode, func(t *testing.T) {
			objs := renderObjects(t, allComponents(mode))
			left := map[string]string{} // name: kind as kubectl spells it
			rendered := map[string]bool{}
			for _, o := range objs {
				switch o.GetKind() {
				case "Secret", "ConfigMap":
					rendered[o.GetKind()+"/"+o.GetName()] = true
				case "Role", "ClusterRole":
					rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
					for _, r := range rules {
						res, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "resources")
						names, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "resourceNames")
						for _, kind := range []string{"secret", "configmap"} {
							if slices.Contains(res, kind+"s") {
								for _, n := range names {
									left[n] = kind
								}
							}
						}
					}
				case "Certificate":
					n, _, _ := unstructured.NestedString(o.Object, "spec", "secretName")
					left[n] = "secret"
				}
			}
			n := 0
			for name, kind := range left {
				// Only the release's own: not the user's (sts.tlsSecretName,
				// an unmanaged mapping), not what the chart renders.
				if !strings.HasPrefix(name, ReleaseName+"-") || rendered[map[string]string{"secret": "Secret", "configmap": "ConfigMap"}[kind]+"/"+name] {
					continue
				}
				n++
				if !slices.Contains(deleted[kind], name) {
					t.Errorf("the README's uninstall commands leave %s %s (they delete %v)", kind, name, deleted)
				}
			}
			if n == 0 {
				t.Error("no run-time Secret or ConfigMap found: the test sees nothing")
			}
		})
	}
}
