package configs

import (
	"reflect"
	"testing"
)

// TestShippedOrderdFileIsTheDefaults: configs/orderd.yaml states exactly
// the built-in defaults. scripts/devstack.sh relies on it: the
// configuration it writes for the local stack holds only what differs
// (ports, secrets files), everything else being these defaults.
func TestShippedOrderdFileIsTheDefaults(t *testing.T) {
	file, err := LoadOrderd("orderd.yaml", []string{})
	if err != nil {
		t.Fatal(err)
	}
	if def := DefaultOrderd(); !reflect.DeepEqual(file, def) {
		t.Errorf("orderd.yaml and DefaultOrderd disagree:\nfile:    %+v\ndefault: %+v", file, def)
	}
}
