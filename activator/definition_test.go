package activator

import (
	"reflect"
	"testing"

	"github.com/socketd/socketd"
)

// TestSameSeesEveryField: a change of any field that concerns spawning
// makes a definition differ, so that a new field cannot be forgotten in
// same; the fields that do not concern it do not.
func TestSameSeesEveryField(t *testing.T) {
	ignored := map[string]bool{"Description": true, "Enabled": true, "CreatedAt": true, "UpdatedAt": true,
		"Status": true, "SocketOptions": true}
	base := socketd.NewSocket()
	base.Name, base.Listen, base.Command = "x", []string{"0"}, []string{"/bin/true"}
	d := newDefinition(&base)
	typ := reflect.TypeFor[socketd.Socket]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		changed := base
		v := reflect.ValueOf(&changed).Elem().Field(i)
		switch v.Kind() {
		case reflect.String:
			v.SetString(v.String() + "changed")
		case reflect.Bool:
			v.SetBool(!v.Bool())
		case reflect.Slice:
			v.Set(reflect.Append(reflect.MakeSlice(v.Type(), 0, 1), reflect.New(v.Type().Elem()).Elem()))
		case reflect.Map:
			m := reflect.MakeMap(v.Type())
			m.SetMapIndex(reflect.ValueOf("K"), reflect.ValueOf("v"))
			v.Set(m)
		case reflect.Pointer:
			v.Set(reflect.New(v.Type().Elem()))
		case reflect.Struct:
			switch {
			case f.Name == "Limits":
				// The access rules are compiled into the definition.
				changed.IPAddressDeny = []string{"any"}
			case f.Name == "ResourceLimits":
				changed.LimitNOFILE = "64"
			case !ignored[f.Name]:
				t.Fatalf("field %s: don't know how to change it", f.Name)
			default:
				continue
			}
		default:
			t.Fatalf("field %s of kind %s: don't know how to change it", f.Name, v.Kind())
		}
		if got := d.same(&changed); got != ignored[f.Name] {
			t.Errorf("a change of %s: same = %v", f.Name, got)
		}
	}
	// An empty list is no change.
	empty := base
	empty.Environment, empty.SupplementaryGroups = map[string]string{}, []string{}
	if !d.same(&empty) {
		t.Error("an empty environment or group list differs from none")
	}
}
