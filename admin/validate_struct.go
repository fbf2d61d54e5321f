package admin

import (
	"reflect"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/invopop/validation"
)

// validateStruct is validation.ValidateStruct with the field of each rule
// set looked up once per struct type and offset: ValidateStruct searches the
// struct's fields by reflection for every rule set of every call, which was
// most of validating the 100,000 routes of a large apply. The errors are
// the same (keyed by the field's json name, an internal error as is); a
// struct with embedded fields goes to ValidateStruct itself.
func validateStruct(structPtr any, fields ...fieldRules) error {
	sv := reflect.ValueOf(structPtr)
	if useReference.Load() || sv.Kind() != reflect.Pointer || sv.IsNil() || sv.Elem().Kind() != reflect.Struct || hasEmbedded(sv.Elem().Type()) {
		return validateStructReference(structPtr, fields)
	}
	typ, base := sv.Elem().Type(), sv.Pointer()
	errs := validation.Errors{}
	for i, f := range fields {
		fv := reflect.ValueOf(f.ptr)
		if fv.Kind() != reflect.Pointer {
			return validation.NewInternalError(validation.ErrFieldPointer(i))
		}
		if fv.Pointer() < base {
			return validation.NewInternalError(validation.ErrFieldNotFound(i))
		}
		name, ok := fieldName(typ, fv.Pointer()-base, fv.Type().Elem())
		if !ok {
			return validation.NewInternalError(validation.ErrFieldNotFound(i))
		}
		err := validation.Validate(fv.Elem().Interface(), f.rules...)
		if err == nil {
			continue
		}
		if ie, isInternal := err.(validation.InternalError); isInternal && ie.InternalError() != nil {
			return err
		}
		errs[name] = err
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// useReference makes validateStruct call ValidateStruct, for the tests
// that hold the two together.
var useReference atomic.Bool

// fieldRules is validation.Field's rule set of one field, for validateStruct.
type fieldRules struct {
	ptr   any
	rules []validation.Rule
}

// fieldRule is validation.Field for validateStruct.
func fieldRule(ptr any, rules ...validation.Rule) fieldRules { return fieldRules{ptr, rules} }

func validateStructReference(structPtr any, fields []fieldRules) error {
	frs := make([]*validation.FieldRules, len(fields))
	for i, f := range fields {
		frs[i] = validation.Field(f.ptr, f.rules...)
	}
	return validation.ValidateStruct(structPtr, frs...)
}

// fieldKey is a field of a struct type by its offset and type.
type fieldKey struct {
	typ    reflect.Type
	offset uintptr
	field  reflect.Type
}

// fieldNames caches fieldName; the struct types are few and fixed.
var fieldNames sync.Map // fieldKey -> string, or false when there is no such field

// fieldName is the error name ValidateStruct gives the field of typ at
// offset whose type is field: its json name, or its Go name.
func fieldName(typ reflect.Type, offset uintptr, field reflect.Type) (string, bool) {
	key := fieldKey{typ, offset, field}
	if v, ok := fieldNames.Load(key); ok {
		name, found := v.(string)
		return name, found
	}
	var v any = false
	for i := typ.NumField() - 1; i >= 0; i-- {
		sf := typ.Field(i)
		if sf.Offset == offset && sf.Type == field {
			v = errorFieldName(sf)
			break
		}
	}
	fieldNames.Store(key, v)
	name, found := v.(string)
	return name, found
}

// errorFieldName is invopop's name for a field in its errors.
func errorFieldName(f reflect.StructField) string {
	if tag := f.Tag.Get(validation.ErrorTag); tag != "" && tag != "-" {
		if name, _, _ := strings.Cut(tag, ","); name != "" {
			return name
		}
	}
	return f.Name
}

// embedded caches hasEmbedded.
var embedded sync.Map // reflect.Type -> bool

func hasEmbedded(t reflect.Type) bool {
	if v, ok := embedded.Load(t); ok {
		return v.(bool)
	}
	found := false
	for i := range t.NumField() {
		found = found || t.Field(i).Anonymous
	}
	embedded.Store(t, found)
	return found
}
