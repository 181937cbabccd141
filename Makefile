# s390-dumptools - see README.md
PY ?= python3
export PIP_BREAK_SYSTEM_PACKAGES := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1
STAMP := build/.installed

.PHONY: install demo demo-real test bench bench-scale fuzz realworld clean

$(STAMP): pyproject.toml setup.py native/_native.c
	$(PY) -m pip install -q -e '.[test]'
	@mkdir -p build && touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh

# the same on real s390x Linux under QEMU (first run builds and boots: ~13 minutes, then cached)
demo-real: $(STAMP)
	bash scripts/demo-real.sh

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bench

# a 1 TiB sparse machine with 8 GiB of data through every stage (~40 GB free disk under /var/tmp)
bench-scale: $(STAMP)
	$(PY) -m bench.scale

# real s390x kernels under qemu-system-s390x: artifacts cached in ~/.cache/s390-dumptools/realworld
realworld: $(STAMP)
	$(PY) -m tests.realworld.harness
	$(PY) -m pytest -q -m realworld tests/realworld

# coverage-guided fuzzing of every parser (atheris); default budget 8 minutes
fuzz: $(STAMP)
	$(PY) -m fuzz

clean:
	rm -rf build out *.egg-info native/*.so .pytest_cache
