# mbrl_ros: fresh-machine set-up, build, demo, tests, benchmarks.
# Every target bootstraps what it needs (apt packages, .venv with pinned wheels, a cmake
# build + install of the package into the venv) and is a fast no-op when nothing changed.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
VPY := $(VENV)/bin/python
BUILD := $(CURDIR)/build
STAMPS := $(BUILD)/stamps
REQS := requirements/ros-kilted.txt requirements/python.txt requirements/dev.txt
# Sources whose change must trigger a rebuild + reinstall into the venv.
PKG_SOURCES := $(shell find mbrl_ros msg srv action launch config scripts -type f \
                 -not -path '*/__pycache__/*' 2>/dev/null) CMakeLists.txt package.xml
ROS_ENV := AMENT_PREFIX_PATH=$(VENV) CMAKE_PREFIX_PATH=$(VENV) RMW_IMPLEMENTATION=rmw_fastrtps_cpp

.PHONY: help setup build demo test lint bench bench-planner bench-control bench-sim bench-model \
        bench-learning bench-closed-loop bench-warm-start bench-checkpoints bench-model-levers \
        bench-plan-fidelity bench-drop-foresight bench-drop-hazard bench-cube-turns bench-soak \
        clean \
        distclean

help:
	@echo "make demo   run the main job on the simulated hand (sets everything up first)"
	@echo "make test   lint + the whole test suite (sets everything up first)"
	@echo "make bench  the quick benchmark suite (bench/results/*.json, about 15 min)"
	@echo "make bench-learning  learning curves vs planners, a perfect model and SAC (hours;"
	@echo "            resumable; BUDGET=pddm (default: the 100k-transition bar)|standard|short)"
	@echo "make bench-closed-loop / bench-warm-start  planner variants (PDDM, bfloat16, gentle)"
	@echo "            closed loop / warm-started training, on bench-learning BUDGET=pddm's run"
	@echo "make bench-checkpoints RUN=runs/bench_learning/<budget>/<run>  evaluation episodes"
	@echo "            on a learned run's checkpoints, per planner variant (learning curves)"
	@echo "make bench-model-levers RUN=...  one model per lever (epochs, probabilistic, members,"
	@echo "            width) on that run's data, each evaluated closed-loop"
	@echo "make bench-plan-fidelity MODELS=a.model,b.model  how well each model ranks the"
	@echo "            planner's own candidates (the simulator scores a subset of them)"
	@echo "make bench-drop-foresight RUN=... ITERATION=N  whether model N foresees the drops of"
	@echo "            the episodes collected after it, k steps ahead, per goal"
	@echo "make bench-cube-turns [MODEL=.../iteration_N.model]  each cube goal planned on the"
	@echo "            simulator (and a learned model): the cube's height and error per step"
	@echo "make bench-soak  the whole stack for DURATION seconds (default 1800): memory, threads,"
	@echo "            transitions executed vs recorded (bench/results/soak.json; SOAK_MODE=realtime:"
	@echo "            soak_realtime.json)"

$(STAMPS)/apt: scripts/setup/apt_packages.sh
	@mkdir -p $(STAMPS)
	bash scripts/setup/apt_packages.sh
	@touch $@

$(STAMPS)/venv: $(STAMPS)/apt $(REQS) requirements/constraints.txt
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check \
	    $(addprefix -r ,$(REQS)) -c requirements/constraints.txt
	bash scripts/setup/fix_ros_wheel_cmake.sh $(VENV)
	@touch $@

# The interface directories are prerequisites too: removing a .msg/.srv/.action changes the
# directory, and then the generated code of the old set is cleared (a stale build links it).
$(STAMPS)/install: $(STAMPS)/venv $(PKG_SOURCES) msg srv $(wildcard action)
	@echo "building mbrl_ros into $(VENV)"
	@mkdir -p $(BUILD); ls msg srv action 2>/dev/null > $(BUILD)/interfaces.new; \
	    cmp -s $(BUILD)/interfaces.new $(BUILD)/interfaces.list \
	    || { rm -rf $(BUILD)/cmake; mv $(BUILD)/interfaces.new $(BUILD)/interfaces.list; }
	@$(ROS_ENV) cmake -S . -B $(BUILD)/cmake -DCMAKE_INSTALL_PREFIX=$(VENV) \
	    -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DPython3_EXECUTABLE=$(VPY) \
	    > $(BUILD)/cmake-configure.log || { cat $(BUILD)/cmake-configure.log; exit 1; }
	@$(ROS_ENV) cmake --build $(BUILD)/cmake -j2 > $(BUILD)/cmake-build.log \
	    || { tail -50 $(BUILD)/cmake-build.log; exit 1; }
	@rm -rf $$($(VPY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/mbrl_ros
	@$(ROS_ENV) cmake --install $(BUILD)/cmake > $(BUILD)/cmake-install.log \
	    || { tail -50 $(BUILD)/cmake-install.log; exit 1; }
	@touch $@

setup build: $(STAMPS)/install

demo: $(STAMPS)/install
	$(VENV)/bin/mbrl-ros demo

lint: $(STAMPS)/venv
	$(VENV)/bin/ruff check .

test: $(STAMPS)/install lint
	$(VENV)/bin/pytest test

# The quick suite; each writes bench/results/<name>.json (+ pictures).
bench: bench-planner bench-control bench-sim bench-model

bench-planner: $(STAMPS)/install
	$(VPY) bench/bench_planner.py --out bench/results/planner.json

bench-control: $(STAMPS)/install
	$(VPY) bench/bench_control.py --out bench/results/control.json

bench-sim: $(STAMPS)/install
	$(VPY) bench/bench_sim.py --out bench/results/sim.json

bench-model: $(STAMPS)/install
	$(VPY) bench/bench_model.py --out bench/results/model.json

# Long and resumable: rerunning continues where it stopped (runs/bench_learning/$(BUDGET)).
BUDGET ?= pddm
bench-learning: $(STAMPS)/install
	$(VPY) bench/bench_learning.py --budget $(BUDGET)

# On the learned run of `make bench-learning BUDGET=pddm` (its models and dataset).
bench-closed-loop: $(STAMPS)/install
	$(VPY) bench/bench_closed_loop.py --out bench/results/closed_loop.json

bench-warm-start: $(STAMPS)/install
	$(VPY) bench/bench_warm_start.py --out bench/results/warm_start.json

RUN ?= runs/bench_learning/pddm_explore/baoding_mppi_learned_seed0
bench-checkpoints: $(STAMPS)/install
	$(VPY) bench/bench_checkpoints.py --run $(RUN)

bench-model-levers: $(STAMPS)/install
	$(VPY) bench/bench_model_levers.py --run $(RUN)

# How well learned models rank the planner's own candidates (simulator-scored samples).
MODELS ?= $(RUN)/levers/as_run.model
bench-plan-fidelity: $(STAMPS)/install
	$(VPY) bench/bench_plan_fidelity.py --models $(MODELS)

# Whether a run's model N sees the drops of its later (unseen) episodes coming, per goal.
ITERATION ?= 1
bench-drop-foresight: $(STAMPS)/install
	$(VPY) bench/bench_drop_foresight.py --run $(RUN) --iteration $(ITERATION)

# Whether a classifier of the drops (fitted on the run's episodes before model N) keeps
# the object when the planner pays for its hazard (weights 0 = the control, 30, 100).
bench-drop-hazard: $(STAMPS)/install
	$(VPY) bench/bench_drop_hazard.py --run $(RUN) --iteration $(ITERATION)

# Where each cube turn takes the cube (height, error per step), planned on the simulator
# and, with MODEL=, on a learned checkpoint too.
bench-cube-turns: $(STAMPS)/install
	$(VPY) bench/bench_cube_turns.py $(if $(MODEL),--model $(MODEL))

# Long, not part of `make bench`: the whole learning stack for DURATION seconds.
DURATION ?= 1800
SOAK_MODE ?= lockstep
SOAK_OUT := bench/results/$(if $(filter realtime,$(SOAK_MODE)),soak_realtime,soak).json
bench-soak: $(STAMPS)/install
	$(VPY) bench/bench_soak.py --duration $(DURATION) --mode $(SOAK_MODE) --out $(SOAK_OUT)

clean:
	rm -rf $(BUILD)

distclean: clean
	rm -rf $(VENV)
