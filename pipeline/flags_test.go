package pipeline

import (
	"strings"
	"testing"
)

// A template parameter is a flag of its binary, described by it: a parameter the binary does not
// define, or an env var its flag does not read, stops the generator.
func TestParametersMustBeFlagsOfTheirBinary(t *testing.T) {
	t.Parallel()
	for name, task := range map[string]Task{
		"unknown flag":      {Binary: "approver", Template: "verify", Subcommand: []string{"verify"}, Params: []Param{req("no-such-flag")}},
		"flag of other cmd": {Binary: "approver", Template: "verify", Subcommand: []string{"verify"}, Params: []Param{req("notify-url")}},
		"env not read":      {Binary: "train-launcher", Template: "train", Params: []Param{{Name: "hp", Flag: "hyperparameter", Env: "GANTRY_HP"}}},
		"unknown binary":    {Binary: "trainer", Template: "train", Params: []Param{req("image")}},
	} {
		if _, err := resolve([]Task{task}); err == nil {
			t.Errorf("%s: resolved", name)
		}
	}
	got, err := resolve([]Task{{Binary: "train-launcher", Template: "train", Params: []Param{def("timeout"), set("cpu", "1"), req("image")}}})
	if err != nil {
		t.Fatal(err)
	}
	p := got[0].Params
	if *p[0].Default != "2h" || *p[1].Default != "1" || p[2].Default != nil || !strings.Contains(p[2].Description, "training image") {
		t.Errorf("resolved params %+v", p)
	}
}
