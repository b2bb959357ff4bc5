package pipeline

import (
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func intstrFromInt(i int) intstr.IntOrString { return intstr.FromInt32(int32(i)) }

func mustQ(s string) resource.Quantity { return resource.MustParse(s) }
