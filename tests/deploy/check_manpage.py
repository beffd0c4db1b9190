#!/usr/bin/env python3
"""Checks that docs/pginval.8 documents what the sources define.

    check_manpage.py ROOT

Reads the setting table (config_opts in daemon/core/config.c), the command
line options (getopt_long calls in daemon/core/shell.c, the shell of run,
check and apply, and in daemon/tail.c), the commands that run on the shell
(their struct shell_ops tables in daemon/*/*_main.c) and the environment
variables the daemon reads (getenv calls in daemon/ and its folders), and
checks that the man
page names each of them in the right place, with the setting's default and
range, and each shell command's options in its SYNOPSIS. Prints one line per check, "PASS what" or
"FAIL what: why"; tests/deploy/test_install.sh counts them.
"""

import glob
import os
import re
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else "."
results = []


def check(what, ok, why=""):
    results.append((what, bool(ok), why))


def daemon_files(pattern):
    """The daemon's files matching pattern, at its top and in its folders."""
    return sorted(glob.glob(os.path.join(ROOT, "daemon", pattern)) +
                  glob.glob(os.path.join(ROOT, "daemon", "*", pattern)))


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def plain(line):
    """mdoc source text without escapes that hide characters: \\- is -,
    \\& is nothing."""
    return line.replace("\\-", "-").replace("\\&", "")


def fmt_number(x):
    """A number the way config.c prints ranges (%g), without exponents."""
    v = float(x)
    return str(int(v)) if v == int(v) else repr(v)


man = read("docs/pginval.8").splitlines()

# -- Sections (.Sh) and subsections (.Ss) -------------------------------------
sections = {}           # .Sh name -> its lines
current = None
for line in man:
    if line.startswith(".Sh "):
        current = plain(line[4:]).strip()
        sections[current] = []
    elif current is not None:
        sections[current].append(line)

for name in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS",
             "CONFIGURATION", "KEY TEMPLATES", "MESSAGES", "SIGNALS",
             "ENVIRONMENT", "FILES", "EXIT STATUS", "EXAMPLES", "SEE ALSO"):
    check("section %s present" % name, name in sections)


def text_of(section):
    return plain("\n".join(sections.get(section, [])))


# -- Settings ------------------------------------------------------------------
# config_opts rows: { "section", "name", TYPE, O(field), default, min, max },
opt_re = re.compile(r'\{\s*"(\w+)",\s*"(\w+)",\s*(OPT_\w+),\s*O\(\w+\),\s*'
                    r'(NULL|"[^"]*"),\s*([-\d.e]+),\s*([-\d.e]+)\s*\}')
config_c = read("daemon/core/config.c")
table = config_c[config_c.index("config_opts[]"):]
table = table[:table.index("};")]
opts = opt_re.findall(table)
check("config_opts parsed from daemon/core/config.c", len(opts) >= 10,
      "found %d rows; has the table's layout changed?" % len(opts))

# Items of the CONFIGURATION section: (subsection, setting) -> body text.
# Consecutive .It lines share the body that follows them.
items = {}
sub = None
group = []
body_started = False
for line in sections.get("CONFIGURATION", []):
    if line.startswith(".Ss "):
        m = re.search(r"\[(\w+)", plain(line))
        sub = m.group(1) if m else None
        group, body_started = [], False
        continue
    m = re.match(r"\.It Cm (\w+)", line)
    if m:
        if body_started:
            group, body_started = [], False
        key = (sub, m.group(1))
        items[key] = []
        group.append(key)
        continue
    if line.startswith(".El"):
        group, body_started = [], False
        continue
    if group:
        body_started = True
        for key in group:
            items[key].append(plain(line))

for section, name, typ, default, lo, hi in opts:
    what = "[%s] %s documented" % (section, name)
    body = items.get((section, name))
    if body is None:
        check(what, False, "no '.It Cm %s' under '.Ss [%s]'" % (name, section))
        continue
    text = " ".join(body)
    words = set(re.findall(r"[\w.:/@-]+", text))
    if default == "NULL":
        check(what + " as required", "Required." in text, text[:200])
    elif default == '""':
        check(what + " as unset by default", "Unset by default" in text,
              text[:200])
    else:
        dflt = default.strip('"')
        check(what + " with default %s" % dflt,
              dflt in words or dflt in text, text[:300])
    if typ in ("OPT_INT", "OPT_SECONDS"):
        rng = "%s to %s" % (fmt_number(lo), fmt_number(hi))
        check(what + " with range %s" % rng, rng in text, text[:300])

check("[table schema.name] keys documented", ("table", "keys") in items)

# -- Command line ----------------------------------------------------------------
all_text = plain("\n".join(man))
for src in ("daemon/core/shell.c", "daemon/tail.c"):
    code = read(src)
    for name in re.findall(r'\{\s*"([\w-]+)",\s*\w+_argument', code):
        check("--%s (%s) documented" % (name, src),
              re.search(r"\bFl -%s\b" % re.escape(name), all_text),
              "no 'Fl \\-%s'" % name)
    for optstring in re.findall(r'getopt_long\([^"]*"([^"]+)"', code):
        for ch in optstring.replace(":", ""):
            check("-%s (%s) documented" % (ch, src),
                  re.search(r"\bFl (?:\w*%s\w*)\b" % ch, all_text)
                  if ch in "hV" else
                  re.search(r"\bFl %s\b" % ch, all_text),
                  "no 'Fl %s'" % ch)
for cmd in ("run", "check", "tail", "apply"):
    check("command %s in SYNOPSIS" % cmd,
          re.search(r"^\.Cm %s$" % cmd, text_of("SYNOPSIS"), re.M))

# The SYNOPSIS of each command: from its ".Cm name" line to the next ".Nm".
synopsis = {}
name = None
for line in sections.get("SYNOPSIS", []):
    if line.startswith(".Nm"):
        name = None
    elif line.startswith(".Cm ") and name is None:
        name = line[4:].strip()
        synopsis[name] = ""
    elif name is not None:
        synopsis[name] += plain(line) + "\n"

# The commands on the shell take its options (but -h and -V, which every
# command takes and the synopsis gives once); --connect only where their
# table says so.
shell_c = read("daemon/core/shell.c")
m = re.search(r'getopt_long\([^"]*"([^"]+)"', shell_c)
shell_letters = m.group(1).replace(":", "").replace("h", "").replace(
    "V", "") if m else ""
check("the shell's options parsed from daemon/core/shell.c", shell_letters,
      "no getopt_long call found")
shell_cmds = []
for path in daemon_files("*_main.c"):
    with open(path, encoding="utf-8") as f:
        code = f.read()
    for body in re.findall(r"struct shell_ops \w+ = \{(.*?)\};", code, re.S):
        m = re.search(r'\.name = "(\w+)"', body)
        if m:
            shell_cmds.append((m.group(1), os.path.basename(path),
                               ".connect_option = true" in body))
check("shell commands found in daemon/*/*_main.c",
      {"run", "apply"} <= {c for c, _, _ in shell_cmds},
      "found %r" % shell_cmds)
for cmd, src, connect in shell_cmds:
    block = synopsis.get(cmd, "")
    for ch in shell_letters:
        check("-%s of %s (%s) in its SYNOPSIS" % (ch, cmd, src),
              re.search(r"\bFl %s\b" % ch, block), "no 'Fl %s'" % ch)
    if not connect:
        check("%s (%s) has no --connect in its SYNOPSIS" % (cmd, src),
              "Fl -connect" not in block)
check("--connect of check in its SYNOPSIS",
      "Fl -connect" in synopsis.get("check", ""))

# -- Environment and signals -----------------------------------------------------
env_text = text_of("ENVIRONMENT")
for path in daemon_files("*.c"):
    with open(path, encoding="utf-8") as f:
        for var in re.findall(r'getenv\("(\w+)"\)', f.read()):
            check("%s (%s) in ENVIRONMENT" % (var, os.path.basename(path)),
                  re.search(r"^\.It Ev %s\b" % var, env_text, re.M))
sig_text = text_of("SIGNALS")
for sig in ("SIGTERM", "SIGINT", "SIGHUP", "SIGPIPE"):
    check("%s in SIGNALS" % sig, re.search(r"\b%s\b" % sig, sig_text))

# -- Files ------------------------------------------------------------------------
files_text = text_of("FILES")
units = ["lib/systemd/system/" + os.path.basename(u) for u in
         sorted(glob.glob(os.path.join(ROOT, "deploy", "*.service")))]
for path in ["/etc/pginval/pginval.conf", "share/pginval/pginval.sql",
             "share/pginval/uninstall.sql"] + units:
    check("%s in FILES" % path, path in files_text)
# The default configuration path in the man page is the binary's.
m = re.search(r'#define SHELL_DEFAULT_CONFIG "([^"]+)"', read("daemon/core/shell.h"))
check("default config path matches daemon/core/shell.h",
      m and ("The default is\n.Pa %s" % m.group(1)) in text_of("OPTIONS"),
      m.group(1) if m else "SHELL_DEFAULT_CONFIG not found")
# Nothing else spells it out: there is one definition.
others = []
for path in daemon_files("*.[ch]"):
    with open(path, encoding="utf-8") as f:
        if (os.path.basename(path) != "shell.h" and
                '"/etc/pginval/pginval.conf"' in f.read()):
            others.append(os.path.basename(path))
check("the default config path is defined once (SHELL_DEFAULT_CONFIG)",
      not others, "also written out in %s" % ", ".join(others))

for what, ok, why in results:
    print(("PASS %s" % what) if ok else ("FAIL %s: %s" % (what, why)))
sys.exit(0 if all(ok for _, ok, _ in results) else 1)
