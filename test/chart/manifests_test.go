package chart

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// TestManifestsUpToDate fails when deploy/ (or the chart's CRD copy) differs
// from a fresh rendering of the chart: `make test` catches a chart changed
// without `make manifests`, or a generated file edited by hand.
func TestManifestsUpToDate(t *testing.T) {
	if err := Check(ModuleRoot()); err != nil {
		t.Fatal(err)
	}
}

// TestCheckNamesDrift runs Check on a copy of the generated files with one
// change each, and expects the error to name the file.
func TestCheckNamesDrift(t *testing.T) {
	files, err := GeneratedFiles()
	if err != nil {
		t.Fatal(err)
	}
	const target = "deploy/auth/manifests.yaml"
	for _, tc := range []struct {
		name   string
		change func(root string) error
		want   string
	}{
		{"none", func(string) error { return nil }, ""},
		{"edited", func(root string) error {
			p := filepath.Join(root, target)
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(p, []byte(strings.Replace(string(b), "replicas: 2", "replicas: 3", 1)), 0o644)
		}, target + " differs"},
		{"removed", func(root string) error { return os.Remove(filepath.Join(root, target)) }, target + " is missing"},
		{"left over", func(root string) error {
			return os.WriteFile(filepath.Join(root, "deploy/auth/deployment.yaml"), []byte("{}\n"), 0o644)
		}, "deploy/auth/deployment.yaml is not generated"},
		{"stale CRD copy", func(root string) error {
			return os.WriteFile(filepath.Join(root, crdChartCopy), []byte("{}\n"), 0o644)
		}, crdChartCopy + " differs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for name, data := range files {
				if err := os.MkdirAll(filepath.Join(root, filepath.Dir(name)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(root, name), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := tc.change(root); err != nil {
				t.Fatal(err)
			}
			err := Check(root)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestGeneratedFilesHeader checks that every file written under deploy/
// says where it comes from, and that each kustomization lists its rendering.
func TestGeneratedFilesHeader(t *testing.T) {
	files, err := GeneratedFiles()
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if !strings.HasPrefix(name, "deploy/") {
			continue
		}
		if !strings.HasPrefix(string(data), Header+"\n") {
			t.Errorf("%s does not start with %q", name, Header)
		}
		if strings.HasSuffix(name, "/"+kustomizationFile) && !strings.Contains(string(data), "  - "+manifestsFile+"\n") {
			t.Errorf("%s does not list %s", name, manifestsFile)
		}
	}
}

// TestWrite runs what `make manifests` runs on a copy of the module's
// generated files with a stale CRD copy, an edited rendering and a file left
// over from an older layout: Write must refresh the copy, rewrite the
// rendering, remove the leftover, report each, and then change nothing.
func TestWrite(t *testing.T) {
	files, err := GeneratedFiles()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range files {
		write(name, data)
	}
	write(crdSource, files[crdChartCopy])
	write(crdChartCopy, []byte("{}\n"))
	write("deploy/auth/manifests.yaml", []byte("edited\n"))
	write("deploy/auth/deployment.yaml", []byte("{}\n"))

	changed, err := Write(root)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(changed)
	if want := []string{crdChartCopy, "deploy/auth/deployment.yaml", "deploy/auth/manifests.yaml"}; !slices.Equal(changed, want) {
		t.Errorf("Write changed %q, want %q", changed, want)
	}
	if _, err := os.Stat(filepath.Join(root, "deploy/auth/deployment.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the leftover is still there: %v", err)
	}
	if err := Check(root); err != nil {
		t.Errorf("Check after Write: %v", err)
	}
	if changed, err := Write(root); err != nil || len(changed) > 0 {
		t.Errorf("a second Write changed %q (error %v), want nothing", changed, err)
	}
}

// TestManifestsWithoutHelmLabels checks that the plain manifests claim no
// Helm release (no helm.sh/chart, no managed-by: Helm), and that their pod
// templates are exactly those of release "podiam" installed with helm, so
// that moving an install from kubectl to helm restarts no pod.
func TestManifestsWithoutHelmLabels(t *testing.T) {
	files, err := GeneratedFiles()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range Variants() {
		if v.Deploy == "" {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			plain, err := Objects(files["deploy/"+v.Deploy+"/"+manifestsFile])
			if err != nil {
				t.Fatal(err)
			}
			out, err := Render(v.Values)
			if err != nil {
				t.Fatal(err)
			}
			helm, err := Objects(out)
			if err != nil {
				t.Fatal(err)
			}
			if len(plain) != len(helm) {
				t.Fatalf("%d objects, helm renders %d", len(plain), len(helm))
			}
			for i, o := range plain {
				for k := range o.GetLabels() {
					if k == "helm.sh/chart" || k == "app.kubernetes.io/managed-by" {
						t.Errorf("%s %s: label %s", o.GetKind(), o.GetName(), k)
					}
				}
				pt, _, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", "template")
				ht, _, _ := unstructured.NestedFieldNoCopy(helm[i].Object, "spec", "template")
				if !reflect.DeepEqual(pt, ht) {
					t.Errorf("%s %s: pod template differs from helm's", o.GetKind(), o.GetName())
				}
			}
		})
	}
}

// TestOverlays builds, with kustomize, the overlay each generated
// kustomization.yaml shows, over the generated files: it must build, set
// every Setting's value, and leave none of the placeholders it replaces.
func TestOverlays(t *testing.T) {
	files, err := GeneratedFiles()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range Variants() {
		if v.Deploy == "" || len(v.Settings) == 0 {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			root := t.TempDir()
			base := filepath.Join(root, "base")
			if err := os.MkdirAll(filepath.Join(root, "overlay"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(base, 0o755); err != nil {
				t.Fatal(err)
			}
			dir := "deploy/" + v.Deploy + "/"
			for _, f := range []string{manifestsFile, kustomizationFile} {
				if err := os.WriteFile(filepath.Join(base, f), files[dir+f], 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// The overlay as the kustomization's comment shows it, its
			// resource pointed at the copy.
			ov := shownOverlay(t, string(files[dir+kustomizationFile]))
			ov = strings.Replace(ov, "  - deploy/"+v.Deploy+" ", "  - ../base ", 1)
			if err := os.WriteFile(filepath.Join(root, "overlay", kustomizationFile), []byte(ov), 0o644); err != nil {
				t.Fatal(err)
			}
			rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(root, "overlay"))
			if err != nil {
				t.Fatalf("kustomize build of the shown overlay:\n%s\n%v", ov, err)
			}
			built, err := rm.AsYaml()
			if err != nil {
				t.Fatal(err)
			}
			objs, err := Objects(built)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range v.Settings {
				i := slices.IndexFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == s.Kind && o.GetName() == s.Name })
				if i < 0 {
					t.Fatalf("no %s %s", s.Kind, s.Name)
				}
				text := fmt.Sprint(objs[i].Object)
				switch {
				case s.Flag != "":
					a := args(objs[i])
					if flagValue(a, s.Flag) != s.Value || slices.ContainsFunc(a, func(x string) bool { return strings.HasPrefix(x, s.Flag+"=") && x != s.Flag+"="+s.Value }) {
						t.Errorf("%s %s: args %q, want %s=%s once", s.Kind, s.Name, a, s.Flag, s.Value)
					}
				case s.Annotation != "":
					if got := objs[i].GetAnnotations()[s.Annotation]; got != s.Value {
						t.Errorf("%s %s: annotation %s=%q, want %q", s.Kind, s.Name, s.Annotation, got, s.Value)
					}
				case !strings.Contains(text, "name:"+s.Env+" value:"+s.Value+"]"):
					t.Errorf("%s %s: env %s is not %s: %s", s.Kind, s.Name, s.Env, s.Value, text)
				}
			}
			for _, p := range []string{placeholderCluster, placeholderAuthRole, placeholderSyncRole, placeholderIssuer, placeholderBucket} {
				if strings.Contains(string(built), p) {
					t.Errorf("the overlay's objects still say %s", p)
				}
			}
		})
	}
}

// shownOverlay returns the overlay kustomization.yaml shown in the comment
// of a generated kustomization.yaml: the comment lines from its apiVersion
// on, uncommented.
func shownOverlay(t *testing.T, kustomization string) string {
	t.Helper()
	var b strings.Builder
	in := false
	for _, line := range strings.Split(kustomization, "\n") {
		body, ok := strings.CutPrefix(line, "#     ")
		if !ok {
			if in && strings.HasPrefix(line, "#") {
				continue
			}
			if in {
				break
			}
			continue
		}
		if strings.HasPrefix(body, "apiVersion:") {
			in = true
		}
		if in {
			b.WriteString(body + "\n")
		}
	}
	if !in {
		t.Fatalf("no overlay shown in:\n%s", kustomization)
	}
	return b.String()
}
