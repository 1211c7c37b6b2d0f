# csvload: `make run` loads the 500k sample, `make test` runs the tests, `make bench` measures.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SAMPLE := sample_data/products-500k.csv

.PHONY: venv run test bench lint clean

$(BIN)/csvload: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/csvload

venv: $(BIN)/csvload

$(SAMPLE): | venv
	$(BIN)/csvload generate 500000 --seed 1 --duplicates 0.02 -o $(SAMPLE)

run: venv $(SAMPLE)
	$(BIN)/csvload init
	$(BIN)/csvload import $(SAMPLE)

test: venv
	$(BIN)/ruff check src tests
	$(BIN)/pytest -q

bench: venv
	$(BIN)/python tests/bench/bench.py
	$(BIN)/python tests/bench/typed_bench.py
	$(BIN)/python tests/bench/feed_bench.py
	$(BIN)/python tests/bench/remote_bench.py
	$(BIN)/python tests/bench/workbook_bench.py
	$(BIN)/python tests/bench/citus_bench.py

clean:
	rm -rf $(VENV) $(SAMPLE) tests/bench/data
