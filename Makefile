# Lepton Edge — the two quick-start commands are `make demo` and `make test`; everything else is what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
KAFKA_VERSION := 4.4.0
KAFKA_LIBS ?= $(HOME)/.cache/lepton-edge/kafka-$(KAFKA_VERSION)/libs
# Debian packages the integration tests use: the GStreamer RTSP server (run with Debian's python3), PortAudio, a
# PulseAudio daemon whose null sink an ALSA pulse device records (the real-time microphone of tests/fixtures/pulse.py),
# and chromium, the browser Playwright drives headless in the console's tests (Playwright's own download is not used).
SYSTEM_PACKAGES := gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi python3-gst-1.0 \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly \
	gstreamer1.0-libav gstreamer1.0-tools libportaudio2 alsa-utils pulseaudio pulseaudio-utils libasound2-plugins \
	maven openjdk-17-jre-headless chromium
PYTEST_ARGS ?=

.PHONY: demo test test-fast check config-docs setup setup-dev system-deps kafka-jars samples model clean

demo: setup
	@mkdir -p .lepton
	$(BIN)/edge run -c configs/demo.yaml
	@echo "Read the events again with: $(BIN)/alerts tail"
	@echo "Review them (snapshots, heat-maps, clips, timelines) in the console: $(BIN)/edge console  -> http://127.0.0.1:8971/"

test: setup-dev system-deps kafka-jars
	LEPTON_KAFKA_LIBS=$(KAFKA_LIBS) $(BIN)/python -m pytest $(PYTEST_ARGS)

# The fast tests alone (no Kafka broker, no RTSP server).
test-fast: setup-dev
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Free space an install needs, in GiB, where the venv lives and where pip unpacks wheels ($TMPDIR): a full disk
# says so before pip starts, instead of an OSError halfway through an install.
define need_disk
	@for d in $(VENV) $${TMPDIR:-/tmp}; do \
		free=$$(df -Pk "$$d" | awk 'NR==2 {printf "%d", $$4 / 1048576}'); \
		if [ "$$free" -lt $(1) ]; then \
			echo "error: $(2) needs about $(1) GiB free; $$d has $$free GiB (df -h $$d). Free some space and run make again." >&2; \
			exit 1; \
		fi; \
	done
endef

# The runtime only: no torch.
setup: $(VENV)/.setup-runtime
$(VENV)/.setup-runtime: pyproject.toml | $(BIN)/python
	$(call need_disk,1,the runtime install)
	$(BIN)/pip install -q -e .
	touch $@

# Tests and training: adds torch (a large download the first time; pip's cache serves it afterwards). With its CUDA
# libraries (the PyPI build) it takes ~6 GiB in the venv.
setup-dev: $(VENV)/.setup-dev
$(VENV)/.setup-dev: pyproject.toml | $(BIN)/python
	$(call need_disk,8,installing torch for tests and training)
	$(BIN)/pip install -q -e '.[dev,train]'
	touch $@ $(VENV)/.setup-runtime

system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# Apache Kafka's broker and its runtime dependencies from Maven Central, into a cache outside the repo.
kafka-jars: $(KAFKA_LIBS)/.complete
$(KAFKA_LIBS)/.complete: tests/kafka/pom.xml
	mvn -q -B -f tests/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=$(KAFKA_LIBS)
	touch $@

# Regenerate the bundled sample clips (deterministic) and retrain the default model package on them.
samples: setup-dev
	$(BIN)/python samples/generate.py --out samples/

# The default package learns from 16 min of normal footage: the two committed training clips and six more the
# generator makes on demand (the same bytes every time; not committed: 12 MB).
EXTRA_NORMAL := $(foreach i,3 4 5 6 7 8,samples/normal_train_$(i).mkv)
$(EXTRA_NORMAL): | setup-dev
	$(BIN)/python samples/generate.py --out samples/ --only $(basename $(notdir $@))

# 12 minutes rather than edge train's default 5: the audio model is still learning at 5 on 16 min of footage (alone,
# two seeds: audio AUC 0.922 / 0.920 after 75 s, 0.926 / 0.927 after 180 s), while the video model is not (1.9 and
# 4.1 passes over the footage: video AUC 0.954 and 0.953). About 16 min to make and train on 2 idle cores.
model: setup-dev $(EXTRA_NORMAL)
	$(BIN)/edge train --normal samples/normal_train_1.mkv samples/normal_train_2.mkv $(EXTRA_NORMAL) \
		--out pipeline/models/default --minutes 12

# The gates, run before the tests (.ci/run): lint with complexity limits (pyproject.toml), types (the runtime
# packages, then the tests), and the configuration reference generated from the config models being current.
check: setup-dev
	$(BIN)/ruff format --check pipeline edge alerts tests
	$(BIN)/ruff check pipeline edge alerts tests
	$(BIN)/mypy -p pipeline -p edge -p alerts
	$(BIN)/mypy tests
	$(BIN)/python -m edge.config_docs --check

# Regenerate docs/configuration.md from the config models' field descriptions.
config-docs: setup
	$(BIN)/python -m edge.config_docs

clean:
	rm -rf .lepton .pytest_cache
