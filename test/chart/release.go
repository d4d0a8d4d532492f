package chart

// RenderRelease is Render for a release of another name in another
// namespace: what `helm install NAME --namespace NAMESPACE` would create.
// Tests that install the chart into one shared API server more than once
// give each installation its own release, so that their objects do not
// collide.
func RenderRelease(name, namespace string, values map[string]any) ([]byte, error) {
	return render(name, namespace, values)
}
