package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// Load builds the configuration from Default(), then the YAML file at path
// (skipped when path is empty; a named file that is missing is an error), then
// MQCHAT_* environment variables, then the flags in flags that were set on the
// command line (flags may be nil). The result is validated.
//
// Every layer is checked against the keys of Config before it is merged, so a
// typo anywhere fails loudly with the offending key instead of being ignored.
func Load(path string, flags *pflag.FlagSet) (Config, error) {
	all := fields()
	byKey := make(map[string]field, len(all))
	for _, f := range all {
		byKey[f.key] = f
	}

	ko := koanf.New(".")
	if err := ko.Load(confmap.Provider(defaults(all), "."), nil); err != nil {
		return Config{}, fmt.Errorf("config: load defaults: %w", err)
	}

	// Every layer is read even when an earlier one failed, and the merged
	// result of what could be read is validated too: a start fails once
	// with every problem, not once per problem.
	var layers []map[string]any
	var errs []error
	if path != "" {
		m, err := readFile(path, byKey)
		errs = append(errs, err)
		layers = append(layers, m)
	}
	m, err := readEnv(all)
	errs = append(errs, err)
	layers = append(layers, m)
	if flags != nil {
		m, err := readFlags(flags, byKey)
		errs = append(errs, err)
		layers = append(layers, m)
	}
	for _, m := range layers {
		if m == nil {
			continue
		}
		if err := ko.Load(confmap.Provider(m, "."), nil); err != nil {
			return Config{}, fmt.Errorf("config: merge: %w", err)
		}
	}

	// Values are already typed by coerce; ErrorUnused and the hook are a
	// backstop should a layer ever slip something past it.
	var c Config
	err = ko.UnmarshalWithConf("", &c, koanf.UnmarshalConf{
		Tag: "koanf",
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook:  mapstructure.StringToTimeDurationHookFunc(),
			ErrorUnused: true,
		},
	})
	if err != nil {
		return Config{}, errors.Join(append(errs, fmt.Errorf("config: %w", err))...)
	}
	// A key whose value could not be read is already reported; validation
	// would only see the default in its place.
	failed := make(map[string]bool)
	for _, e := range flatten(errs) {
		var ke *keyError
		if errors.As(e, &ke) {
			failed[ke.key] = true
		}
	}
	for _, e := range flatten([]error{c.Validate()}) {
		var ke *keyError
		if errors.As(e, &ke) && failed[ke.key] {
			continue
		}
		errs = append(errs, e)
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// keyError is a problem with the value of one key, so that Load can drop
// what validation says again about a key whose value it could not read.
type keyError struct{ key, msg string }

func (e *keyError) Error() string { return e.msg }

func invalid(key, format string, args ...any) error {
	return &keyError{key: key, msg: fmt.Sprintf("config: invalid value for %q", key) + fmt.Sprintf(format, args...)}
}

// flatten lists the errors in errs, opening errors.Join's.
func flatten(errs []error) []error {
	var out []error
	for _, e := range errs {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			out = append(out, flatten(j.Unwrap())...)
		} else if e != nil {
			out = append(out, e)
		}
	}
	return out
}

// RegisterFlags adds one flag per key to fs, named as the dotted key (e.g.
// --http.addr) and defaulting to Default(). Load applies only the flags that
// were set, so these defaults never mask the file or the environment.
func RegisterFlags(fs *pflag.FlagSet) {
	d := reflect.ValueOf(Default())
	for _, f := range fields() {
		v := d.FieldByIndex(f.index)
		u := usage(f.key)
		switch f.kind {
		case kindString:
			fs.String(f.key, v.String(), u)
		case kindInt:
			fs.Int(f.key, int(v.Int()), u)
		case kindBool:
			fs.Bool(f.key, v.Bool(), u)
		case kindDuration:
			fs.Duration(f.key, time.Duration(v.Int()), u)
		case kindStrings:
			fs.StringSlice(f.key, slices.Clone(v.Interface().([]string)), u)
		}
	}
}

// defaults flattens Default() into key → value.
func defaults(all []field) map[string]any {
	d := reflect.ValueOf(Default())
	out := make(map[string]any, len(all))
	for _, f := range all {
		v := d.FieldByIndex(f.index).Interface()
		if s, ok := v.([]string); ok {
			v = slices.Clone(s)
		}
		out[f.key] = v
	}
	return out
}

// readFile parses the YAML file at path into key → typed value.
func readFile(path string, byKey map[string]field) (map[string]any, error) {
	k := koanf.New(".")
	if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("config: %w", err)
		}
		return nil, fmt.Errorf("config: parse %s: %w", path, err)
	}
	raw := k.All()
	out := make(map[string]any, len(raw))
	var errs []error
	reported := make(map[string]bool) // http.addr.{host,port} is one mistake
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		v := raw[key]
		f, ok := byKey[key]
		if !ok {
			if err := strayKey(key, v, byKey, path); err != nil && !reported[err.Error()] {
				reported[err.Error()] = true
				errs = append(errs, err)
			}
			continue
		}
		val, err := coerce(f.kind, v)
		if err != nil {
			errs = append(errs, invalid(key, " in %s: %v", path, err))
			continue
		}
		out[key] = val
	}
	return out, errors.Join(errs...)
}

// strayKey explains a flattened YAML key that is not a setting. Flattening
// leaves an empty or scalar section (mqtt: 5) as a key of its own, and turns a
// mapping given for a setting (http: {addr: {…}}) into keys below it; both
// are type errors on a real key rather than unknown keys.
func strayKey(key string, v any, byKey map[string]field, path string) error {
	for k := range byKey {
		if strings.HasPrefix(k, key+".") { // key is a section
			if m, ok := v.(map[string]any); v == nil || ok && len(m) == 0 {
				return nil // "mqtt:" with nothing under it
			}
			return invalid(key, " in %s: expected a mapping of settings, got %s", path, describe(v))
		}
		if strings.HasPrefix(key, k+".") {
			return invalid(k, " in %s: expected %s, got a mapping", path, byKey[k].kind)
		}
	}
	return fmt.Errorf("config: unknown key %q in %s", key, path)
}

// readEnv maps MQCHAT_* variables to keys through the table of known names:
// keys contain underscores, so the name alone cannot say where the dots go.
func readEnv(all []field) (map[string]any, error) {
	byEnv := make(map[string]field, len(all))
	for _, f := range all {
		byEnv[f.env()] = f
	}
	raw, err := env.Provider("", env.Opt{Prefix: envPrefix}).Read()
	if err != nil {
		return nil, fmt.Errorf("config: read environment: %w", err)
	}
	out := make(map[string]any, len(raw))
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(raw)) {
		f, ok := byEnv[name]
		if !ok {
			errs = append(errs, fmt.Errorf("config: unknown environment variable %s", name))
			continue
		}
		val, err := coerce(f.kind, raw[name])
		if err != nil {
			errs = append(errs, invalid(f.key, " (from %s): %v", name, err))
			continue
		}
		out[f.key] = val
	}
	return out, errors.Join(errs...)
}

// readFlags takes the flags that were set and name a key; other flags in the
// set (--config, say) belong to the caller.
func readFlags(flags *pflag.FlagSet, byKey map[string]field) (map[string]any, error) {
	k := koanf.New(".")
	p := posflag.ProviderWithFlag(flags, ".", nil, func(f *pflag.Flag) (string, any) {
		if _, ok := byKey[f.Name]; !ok || !f.Changed {
			return "", nil
		}
		return f.Name, posflag.FlagVal(flags, f)
	})
	if err := k.Load(p, nil); err != nil {
		return nil, fmt.Errorf("config: read flags: %w", err)
	}
	raw := k.All()
	out := make(map[string]any, len(raw))
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		f, ok := byKey[key]
		if !ok {
			continue
		}
		val, err := coerce(f.kind, raw[key])
		if err != nil {
			errs = append(errs, invalid(key, " (from --%s): %v", key, err))
			continue
		}
		out[key] = val
	}
	return out, errors.Join(errs...)
}

// coerce turns a value from any layer into the Go type of the setting. YAML
// gives typed scalars, env gives strings, flags give pflag's types; strings are
// parsed for every kind so quoting a number in YAML is harmless.
func coerce(k kind, v any) (any, error) {
	bad := func() error { return fmt.Errorf("expected %s, got %s", k, describe(v)) }
	switch k {
	case kindString:
		switch x := v.(type) {
		case nil:
			return "", nil
		case string:
			return x, nil
		case int, int64, uint64:
			// An all-digit secret or path is still a string.
			return fmt.Sprint(x), nil
		}
	case kindInt:
		switch x := v.(type) {
		case int:
			return x, nil
		case int64:
			if x >= math.MinInt && x <= math.MaxInt {
				return int(x), nil
			}
		case uint64:
			if x <= math.MaxInt {
				return int(x), nil
			}
		case float64: // YAML reads 1e6 as a float
			if x == math.Trunc(x) && x >= math.MinInt && x < math.MaxInt {
				return int(x), nil
			}
		case string:
			if n, err := strconv.Atoi(strings.TrimSpace(x)); err == nil {
				return n, nil
			}
		}
	case kindBool:
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			if b, err := strconv.ParseBool(strings.TrimSpace(x)); err == nil {
				return b, nil
			}
		}
	case kindDuration:
		switch x := v.(type) {
		case time.Duration:
			return x, nil
		case int:
			// A bare number would be nanoseconds, never what was meant;
			// only 0 is unambiguous.
			if x == 0 {
				return time.Duration(0), nil
			}
		case string:
			if d, err := time.ParseDuration(strings.TrimSpace(x)); err == nil {
				return d, nil
			}
		}
	case kindStrings:
		switch x := v.(type) {
		case nil:
			return []string{}, nil
		case string:
			return splitList(x), nil
		case []string:
			return slices.Clone(x), nil
		case []any:
			out := make([]string, 0, len(x))
			for _, e := range x {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("expected %s, got element %s", k, describe(e))
				}
				out = append(out, s)
			}
			return out, nil
		}
	}
	return nil, bad()
}

// splitList reads a comma-separated list; "" is the empty list, so an
// environment variable can clear a list set in the file.
func splitList(s string) []string {
	out := []string{}
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "nothing"
	case string:
		return strconv.Quote(x)
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	default:
		return fmt.Sprint(x)
	}
}
