"""The nats.conf that the official NATS Helm chart makes of our values.

  expected VALUES BASE   the nats.conf the chart is expected to produce: the
                         chart's own config (BASE: as `helm template` rendered
                         it for VALUES' `config` without `merge`) overwritten by
                         `config.merge` (Helm's mergeOverwrite), printed the way
                         the chart prints it (pretty JSON, "<< x >>" unquoted).
  expected-json VALUES BASE
                         the same config as JSON, variables and units still
                         written "<< x >>" (tests/process/kubernetes.rs runs it).
  configmap RENDERED     the nats.conf in `helm template` output.
  base RENDERED VALUES   BASE from `helm template` output rendered without
                         `config.merge` (for `expected`), on stdout.
  env VALUES SECRET DIR  NAME=value lines for the variables the chart's pod
                         gets from `container.env`: each must come from the
                         Secret SECRET, whose entries are the files in DIR.
"""
import copy
import json
import re
import sys

import yaml

UNQUOTED = re.compile(r'"<<\s+(.*?)\s+>>"')
VALUE_LINE = re.compile(r'^(\s*"[^"]+": )(.*?)(,?)$')


def config_without_merge(values):
    config = copy.deepcopy(values.get("config") or {})
    config.pop("merge", None)
    return config


def merge_overwrite(dst, src):
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            merge_overwrite(dst[key], value)
        else:
            dst[key] = copy.deepcopy(value)
    return dst


def format_config(config):
    # Go's json.MarshalIndent of a map: keys sorted, two-space indent.
    text = json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False)
    return UNQUOTED.sub(lambda m: m.group(1), text)


def unformat_config(text):
    """The chart's printed config back to data: raw values (variables,
    units) become "<< x >>" again."""
    lines = []
    for line in text.splitlines():
        m = VALUE_LINE.match(line)
        if m and m.group(2) not in ("{", "["):
            try:
                json.loads(m.group(2))
            except ValueError:
                line = f'{m.group(1)}"<< {m.group(2)} >>"{m.group(3)}'
        lines.append(line)
    return json.loads("\n".join(lines))


def configmap(rendered):
    for doc in yaml.safe_load_all(rendered):
        if doc and doc.get("kind") == "ConfigMap" and "nats.conf" in doc.get("data", {}):
            return doc["data"]["nats.conf"]
    sys.exit("no ConfigMap with nats.conf in the helm output")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd in ("expected", "expected-json"):
        values = yaml.safe_load(open(args[0]))
        base = json.load(open(args[1]))
        if base["values_config"] != config_without_merge(values):
            sys.exit(f"{args[1]} was rendered for another `config` than {args[0]} has "
                     "(besides `merge`): render it again with the chart (NATS_CHART_DIR)")
        merged = merge_overwrite(copy.deepcopy(base["config"]), values["config"].get("merge") or {})
        print(format_config(merged) if cmd == "expected" else json.dumps(merged, indent=2))
    elif cmd == "configmap":
        print(configmap(open(args[0]).read()).rstrip("\n"))
    elif cmd == "base":
        values = yaml.safe_load(open(args[1]))
        config = unformat_config(configmap(open(args[0]).read()))
        out = {"values_config": config_without_merge(values), "config": config}
        print(json.dumps(out, indent=2, sort_keys=True))
    elif cmd == "env":
        values = yaml.safe_load(open(args[0]))
        secret, folder = args[1], args[2]
        for name, spec in sorted(((values.get("container") or {}).get("env") or {}).items()):
            ref = (spec or {}).get("valueFrom", {}).get("secretKeyRef", {}) if isinstance(spec, dict) else {}
            if ref.get("name") != secret:
                sys.exit(f"container.env.{name}: not from the Secret {secret}")
            try:
                value = open(f"{folder}/{ref['key']}").read()
            except OSError as e:
                sys.exit(f"container.env.{name}: Secret {secret} has no entry {ref.get('key')!r} ({e})")
            print(f"{name}={value}")
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
