# s390-dumptools - see README.md
PY ?= python3
export PY
export PIP_BREAK_SYSTEM_PACKAGES := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1
DEPS := pyproject.toml setup.py native/_native.c scripts/bootstrap.sh constraints/ci.txt

.PHONY: install install-test demo demo-real test check smoke bench bench-scale fuzz realworld dist clean

# the package, editable (C extension if a compiler is there); what `make demo` needs
build/.installed: $(DEPS)
	bash scripts/bootstrap.sh demo
	@mkdir -p build && touch $@

# the same with the test and codec extras and the Debian packages of the real-peer tests
build/.installed-test: $(DEPS)
	bash scripts/bootstrap.sh test
	@mkdir -p build && touch $@ build/.installed

install: build/.installed
install-test: build/.installed-test

demo: build/.installed
	bash scripts/demo.sh

# the same on real s390x Linux under QEMU, and the suite itself in the s390x guest (first run builds
# and boots: ~18 minutes, then cached)
demo-real: build/.installed-test
	bash scripts/demo-real.sh

# the fast loop: every test but the slow tier (fuzz slices, kill and fault loops, peers under
# qemu-user, the 17 TiB machine) and the real kernels; the CLIs run in-process where they can
test: build/.installed-test
	$(PY) -m pytest -q -m "not slow and not realworld"

# every test tier: the fast loop and the slow tier (what CI runs; the real kernels are `make realworld`)
check: build/.installed-test
	$(PY) -m pytest -q -m "not realworld"

# what a user gets: wheel and sdist built, the wheel installed in fresh venvs, the CLI contract there
smoke:
	bash scripts/smoke-installed.sh

dist:
	$(PY) -m build --outdir dist .

bench: build/.installed-test
	$(PY) -m bench

# a 1 TiB sparse machine with 8 GiB of data through every stage (~40 GB free disk under /var/tmp)
bench-scale: build/.installed-test
	$(PY) -m bench.scale

# real s390x kernels under qemu-system-s390x: artifacts cached in ~/.cache/s390-dumptools/realworld
realworld: build/.installed-test
	$(PY) -m tests.realworld.harness
	$(PY) -m pytest -q -m realworld tests/realworld

# coverage-guided fuzzing of every parser (atheris); default budget 8 minutes
fuzz: build/.installed-test
	$(PY) -m fuzz

clean:
	rm -rf build dist out *.egg-info native/*.so .pytest_cache
