package api

// mergePatch applies a JSON merge patch (RFC 7396) to target and returns the
// result. Both are values as encoding/json decodes them into an any: objects
// are map[string]any. A null in the patch removes the member; an object
// merges member by member; anything else replaces the target's value.
// Maps of target may be modified.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}
