// Package configs loads txorder's typed configuration: defaults, then a YAML
// file, then environment variables, validated with errors that name the
// field. Only cmd/ reads it; every other package takes its own small config.
//
// Environment variables are TXORDER_ followed by the field path in upper
// case with "__" between levels: mysql.password → TXORDER_MYSQL__PASSWORD,
// http.addr → TXORDER_HTTP__ADDR. List values are comma-separated.
//
// Secrets (passwords, API keys, the payment HMAC secret) are never read
// from the YAML file: set them through the environment or point the
// matching *_file field at a file holding them.
package configs

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"

	"github.com/go-playground/validator/v10"
	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// EnvPrefix starts every environment override.
const EnvPrefix = "TXORDER_"

// secret marks fields that must not come from the YAML file.
const secretTag = "secret"

// Load fills cfg (already holding defaults) from the YAML file at path
// (skipped when path is empty) and the environment (os.Environ when environ
// is nil), resolves *_file secrets and validates.
func Load(cfg any, path string, environ []string) error {
	if path != "" {
		fk := koanf.New(".")
		if err := fk.Load(file.Provider(path), yaml.Parser()); err != nil {
			return fmt.Errorf("read config %s: %w", path, err)
		}
		for _, key := range secretKeys(reflect.TypeOf(cfg).Elem(), "") {
			if fk.Exists(key) {
				return fmt.Errorf("config %s: %s is a secret: set %s or %s_file instead of writing it in the file",
					path, key, EnvName(key), key)
			}
		}
		if err := unmarshal(fk, cfg); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
	}
	if environ == nil {
		environ = os.Environ()
	}
	ek := koanf.New(".")
	if err := ek.Load(envProvider{environ: environ, lists: listKeys(reflect.TypeOf(cfg).Elem(), "")}, nil); err != nil {
		return fmt.Errorf("read environment: %w", err)
	}
	if err := unmarshal(ek, cfg); err != nil {
		return fmt.Errorf("environment: %w", err)
	}
	if err := resolveSecretFiles(reflect.ValueOf(cfg).Elem()); err != nil {
		return err
	}
	return Validate(cfg)
}

// HostnamePlaceholder in a RocketMQ instance name stands for the host name.
const HostnamePlaceholder = "{hostname}"

// ExpandHostname replaces HostnamePlaceholder in name with the host name
// (os.Hostname; "localhost" if it cannot be read). Replicas started from
// one configuration, such as containers of a scaled compose service, then
// get distinct RocketMQ client ids.
func ExpandHostname(name string) string {
	if !strings.Contains(name, HostnamePlaceholder) {
		return name
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return strings.ReplaceAll(name, HostnamePlaceholder, host)
}

// unmarshal decodes k over cfg. Unknown keys are errors: a typo in the file
// or in an environment variable name must not silently keep a default.
func unmarshal(k *koanf.Koanf, cfg any) error {
	return k.UnmarshalWithConf("", cfg, koanf.UnmarshalConf{Tag: "koanf", DecoderConfig: &mapstructure.DecoderConfig{
		DecodeHook:       mapstructure.StringToTimeDurationHookFunc(),
		WeaklyTypedInput: true,
		ErrorUnused:      true,
	}})
}

// envProvider is a koanf.Provider over an explicit environment (os.Environ
// in production, a literal slice in tests): TXORDER_A__B=v becomes a.b = v,
// split on commas for list fields.
type envProvider struct {
	environ []string
	lists   map[string]bool
}

func (e envProvider) ReadBytes() ([]byte, error) {
	return nil, errors.New("env provider does not support ReadBytes")
}

func (e envProvider) Read() (map[string]any, error) {
	m := map[string]any{}
	for _, kv := range e.environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvPrefix) {
			continue
		}
		key := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, EnvPrefix), "__", "."))
		if e.lists[key] {
			parts := strings.Split(v, ",")
			for i := range parts {
				parts[i] = strings.TrimSpace(parts[i])
			}
			m[key] = parts
			continue
		}
		m[key] = v
	}
	return expand(m), nil
}

// expand turns {"a.b": v} into {"a": {"b": v}} as koanf providers return.
func expand(flat map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range flat {
		parts := strings.Split(k, ".")
		cur := out
		for _, p := range parts[:len(parts)-1] {
			next, ok := cur[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				cur[p] = next
			}
			cur = next
		}
		cur[parts[len(parts)-1]] = v
	}
	return out
}

// EnvName returns the environment variable that overrides key.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "__"))
}

func walk(t reflect.Type, prefix string, fn func(f reflect.StructField, key string)) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("koanf")
		if name == "" || name == "-" {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() != "time" {
			walk(f.Type, key, fn)
			continue
		}
		fn(f, key)
	}
}

func secretKeys(t reflect.Type, prefix string) []string {
	var out []string
	walk(t, prefix, func(f reflect.StructField, key string) {
		if f.Tag.Get(secretTag) == "true" {
			out = append(out, key)
		}
	})
	return out
}

func listKeys(t reflect.Type, prefix string) map[string]bool {
	out := map[string]bool{}
	walk(t, prefix, func(f reflect.StructField, key string) {
		if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.String {
			out[key] = true
		}
	})
	return out
}

// resolveSecretFiles reads every secret field's companion "<field>_file"
// (a string field tagged secretfile:"<secret field name>") when the secret
// itself is empty. A trailing newline in the file is dropped.
func resolveSecretFiles(v reflect.Value) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() != "time" {
			if err := resolveSecretFiles(fv); err != nil {
				return err
			}
			continue
		}
		target := f.Tag.Get("secretfile")
		if target == "" || fv.String() == "" {
			continue
		}
		dst := v.FieldByName(target)
		if dst.String() != "" {
			continue // the environment value wins over the file
		}
		b, err := os.ReadFile(fv.String())
		if err != nil {
			return fmt.Errorf("%s: %w", f.Tag.Get("koanf"), err)
		}
		dst.SetString(strings.TrimRight(string(b), "\r\n"))
	}
	return nil
}

// Validate checks cfg's `validate` tags and its Check method, and reports
// the first problems by field path (mysql.addr, not MySQL.Addr).
func Validate(cfg any) error {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string { return f.Tag.Get("koanf") })
	// listen_addr: host:port where the host may be empty (all interfaces)
	// and the port 0 (any free port, as tests use).
	_ = v.RegisterValidation("listen_addr", func(fl validator.FieldLevel) bool {
		_, port, err := net.SplitHostPort(fl.Field().String())
		if err != nil {
			return false
		}
		n, err := strconv.Atoi(port)
		return err == nil && n >= 0 && n <= 65535
	})
	// loopback_addr: a listen_addr whose host is a loopback address.
	_ = v.RegisterValidation("loopback_addr", func(fl validator.FieldLevel) bool {
		host, port, err := net.SplitHostPort(fl.Field().String())
		if err != nil {
			return false
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return false
		}
		ip := net.ParseIP(host)
		return host == "localhost" || ip != nil && ip.IsLoopback()
	})
	var msgs []string
	if err := v.Struct(cfg); err != nil {
		var verrs validator.ValidationErrors
		if !errors.As(err, &verrs) {
			return err
		}
		for _, fe := range verrs {
			_, path, _ := strings.Cut(fe.Namespace(), ".")
			msg := fmt.Sprintf("%s: failed %q", path, fe.Tag())
			if fe.Param() != "" {
				msg = fmt.Sprintf("%s: failed %s=%s (got %v)", path, fe.Tag(), fe.Param(), fe.Value())
			}
			msgs = append(msgs, msg)
		}
	}
	if c, ok := cfg.(interface{ Check() []string }); ok {
		msgs = append(msgs, c.Check()...)
	}
	if len(msgs) > 0 {
		return fmt.Errorf("invalid configuration: %s", strings.Join(msgs, "; "))
	}
	return nil
}
