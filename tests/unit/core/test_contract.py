import pytest
import yaml

from nexgen_etl.core.contract import DEFAULT_CONTRACT, ContractError, contract_from_dict, load_contract, parse_contract


def base() -> dict:
    return yaml.safe_load(DEFAULT_CONTRACT.read_text())


def test_default_contract_loads_and_round_trips():
    c = load_contract()
    assert c.name == "nexgen_sales"
    assert c.keys == ("store_id", "sku") and c.target == "units_sold"
    assert c.features.lookback == 28
    assert contract_from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    "mutate, field",
    [
        pytest.param(lambda d: d.pop("target"), "contract.target", id="missing-target"),
        pytest.param(lambda d: d.__setitem__("target", "nope"), "contract.target", id="unknown-target"),
        pytest.param(lambda d: d.__setitem__("target", "store_id"), "contract.target", id="non-numeric-target"),
        pytest.param(lambda d: d["columns"][0].__setitem__("type", "datetime"), "columns[0] (date).type", id="bad-type"),
        pytest.param(lambda d: d["columns"][0].pop("formats"), "columns[0] (date).formats", id="date-without-format"),
        pytest.param(lambda d: d["keys"].append("region"), "contract.keys", id="unknown-key"),
        pytest.param(lambda d: d["time"].__setitem__("period", "fortnight"), "time.period", id="bad-period"),
        pytest.param(lambda d: d["features"].__setitem__("lags", [0]), "features.lags", id="zero-lag"),
        pytest.param(lambda d: d["features"]["rolling"].__setitem__("stats", ["median"]), "features.rolling.stats",
                     id="bad-stat"),
        pytest.param(lambda d: d.__setitem__("colums", []), "contract: unknown field(s) colums", id="typo-field"),
        pytest.param(lambda d: d["csv"].__setitem__("delimiter", ";;"), "csv.delimiter", id="bad-delimiter"),
        pytest.param(lambda d: d["columns"].append(dict(d["columns"][1])), "duplicate column", id="dup-column"),
        pytest.param(lambda d: d["duplicates"].__setitem__("policy", "random"), "duplicates.policy", id="bad-policy"),
        pytest.param(lambda d: d["csv"].__setitem__("null_values", "NA"), "csv.null_values", id="scalar-nulls"),
        pytest.param(lambda d: d["csv"].__setitem__("header", "false"), "csv.header", id="string-bool"),
        pytest.param(lambda d: d["columns"][5].__setitem__("allowed", 1), "columns[5] (promo).allowed",
                     id="scalar-allowed"),
        pytest.param(lambda d: d["time"].__setitem__("period", "hour"), "time.period: 'hour' needs a timestamp",
                     id="hour-on-date"),
        pytest.param(lambda d: d.__setitem__("price", "sku"), "contract.price: must be a numeric", id="text-price"),
        pytest.param(lambda d: d["features"].__setitem__("lags", [1, 1]), "features.lags: repeated", id="dup-lags"),
        pytest.param(lambda d: d["limits"].__setitem__("max_batch_files", 0), "limits.max_batch_files",
                     id="zero-limit"),
        pytest.param(lambda d: d["columns"].append({"name": "month", "type": "int"}), "clash with generated",
                     id="feature-name-clash"),
    ],
)
def test_errors_name_the_bad_field(mutate, field):
    d = base()
    mutate(d)
    with pytest.raises(ContractError) as err:
        parse_contract(d)
    assert field in str(err.value)


def test_source_patterns_match_csv_and_gz_only():
    c = load_contract()
    assert c.source.matches("sales/2024/01/01/a.csv")
    assert c.source.matches("x/a.csv.gz")
    assert not c.source.matches("x/a.parquet")
    assert not c.source.matches("sales/")


def test_keys_ordered_by_date_is_off_by_default_and_must_be_a_bool():
    assert load_contract().source.keys_ordered_by_date is False
    d = base()
    d["source"]["keys_ordered_by_date"] = True
    c = parse_contract(d)
    assert c.source.keys_ordered_by_date is True
    assert contract_from_dict(c.to_dict()) == c
    d["source"]["keys_ordered_by_date"] = "yes"
    with pytest.raises(ContractError, match="source.keys_ordered_by_date"):
        parse_contract(d)


def test_duplicates_default_to_last_on_keys_and_time_dropping_exact_repeats():
    c = load_contract()
    assert (c.duplicate_policy, c.duplicate_on, c.drop_exact_repeats) == ("last", (), True)
    # a plan frozen before these fields existed still loads, with the same defaults
    old = c.to_dict()
    del old["duplicate_on"], old["drop_exact_repeats"]
    assert contract_from_dict(old) == c


@pytest.mark.parametrize("dup", [
    {"policy": "first"},
    {"policy": "keep"},
    {"policy": "keep", "drop_exact_repeats": False},
    {"policy": "last", "on": ["store_id", "date"]},
    {"policy": "first", "on": "sku"},
])
def test_duplicate_policies_parse_and_round_trip(dup):
    d = base()
    d["duplicates"] = dup
    c = parse_contract(d)
    on = dup.get("on", ())
    assert (c.duplicate_policy, c.duplicate_on, c.drop_exact_repeats) == (
        dup["policy"], tuple(on) if isinstance(on, list) else (on,) if on else (), dup.get("drop_exact_repeats", True))
    assert contract_from_dict(c.to_dict()) == c


@pytest.mark.parametrize("dup, field", [
    ({"policy": "keep", "on": ["sku"]}, "duplicates.on: policy 'keep'"),
    ({"policy": "last", "on": ["invoice"]}, "duplicates.on: 'invoice' is not a declared column"),
    ({"policy": "last", "on": []}, "duplicates.on: must name at least one column"),
    ({"policy": "last", "on": ["sku", "sku"]}, "duplicates.on: repeated"),
    ({"policy": "keep", "drop_exact_repeats": "no"}, "duplicates.drop_exact_repeats: must be true or false"),
    ({"policy": "last", "exact": False}, "duplicates: unknown field(s) exact"),
    ("last", "duplicates: must be a mapping"),
])
def test_duplicate_errors_name_the_field(dup, field):
    d = base()
    d["duplicates"] = dup
    with pytest.raises(ContractError) as err:
        parse_contract(d)
    assert field in str(err.value)


def test_no_keys_is_one_series():
    d = base()
    d["keys"] = []
    c = parse_contract(d)
    assert c.keys == ()
    assert contract_from_dict(c.to_dict()) == c
    d["keys"] = None  # the field is still required: `keys: []` says "one series" on purpose
    with pytest.raises(ContractError, match="contract.keys: required field is missing"):
        parse_contract(d)
    d["keys"] = ["sku", "sku"]
    with pytest.raises(ContractError, match="contract.keys: repeated"):
        parse_contract(d)


def test_awkward_column_names_are_accepted():
    d = base()
    d["columns"][3] = {"name": "pm2.5 (µg/m³)", "source": "1st `pm` value", "type": "double", "required": True}
    d["target"] = "pm2.5 (µg/m³)"
    c = parse_contract(d)
    assert c.column("pm2.5 (µg/m³)").raw_name == "1st `pm` value"


def test_a_bare_on_key_in_yaml_is_the_natural_key(tmp_path):
    """YAML 1.1 reads `on:` as the boolean true; the contract takes it for `on` all the same."""
    d = base()
    text = DEFAULT_CONTRACT.read_text().replace("duplicates: {policy: last}", "duplicates: {policy: first, on: [sku]}")
    assert "on: [sku]" in text and True in yaml.safe_load(text)["duplicates"]
    path = tmp_path / "c.yaml"
    path.write_text(text)
    c = load_contract(path)
    assert (c.duplicate_policy, c.duplicate_on) == ("first", ("sku",))
    d["duplicates"] = {"policy": "last", "on": ["sku"]}
    assert parse_contract(d).duplicate_on == ("sku",)


@pytest.mark.parametrize("column, what", [
    ({"name": "UNITS_SOLD", "type": "double"}, "names that differ only in case ['UNITS_SOLD', 'units_sold']"),
    ({"name": "units2", "source": "Units_Sold", "type": "double"}, "sources that differ only in case"),
])
def test_names_that_differ_only_in_case_are_rejected(column, what):
    d = base()
    d["columns"].append(column)
    with pytest.raises(ContractError) as err:
        parse_contract(d)
    assert what in str(err.value)


def wide() -> dict:
    return {"name": "w", "columns": [{"name": "day", "type": "date", "formats": ["yyyy-MM-dd"], "required": True},
                                     {"name": "sensor", "type": "string", "source": "col"},
                                     {"name": "v", "type": "double", "source": "cell"}],
            "time": {"column": "day"}, "keys": ["sensor"], "target": "v",
            "unpivot": {"ids": ["day"], "pattern": "s_*", "key": "col", "value": "cell"}}


def parts() -> dict:
    return {"name": "p", "columns": [{"name": "v", "type": "double"}], "keys": [], "target": "v",
            "time": {"column": "when", "parts": {"year": "Y", "month": "M"}, "period": "month"}}


@pytest.mark.parametrize(
    "make, mutate, field",
    [
        pytest.param(parts, lambda d: d["time"]["parts"].pop("year"), "time.parts.year", id="parts-without-year"),
        pytest.param(parts, lambda d: d["time"]["parts"].update(hour="H"), "time.parts: hour needs ['day']",
                     id="parts-with-a-hole"),
        pytest.param(parts, lambda d: d["time"]["parts"].update(week="W"), "time.parts: unknown", id="parts-unknown"),
        pytest.param(parts, lambda d: d["time"]["parts"].update(month="Y"), "a raw column used for two parts",
                     id="parts-same-raw"),
        pytest.param(parts, lambda d: d["columns"].append({"name": "when", "type": "timestamp", "formats": ["x"]}),
                     "no source or formats", id="parts-and-formats"),
        pytest.param(parts, lambda d: d["columns"].append({"name": "when", "type": "timestamp"}),
                     "time.parts ['year', 'month'] make a date", id="parts-wrong-type"),
        pytest.param(parts, lambda d: d["time"].__setitem__("period", "hour"), "'hour' needs a timestamp",
                     id="parts-date-hourly"),
        pytest.param(wide, lambda d: d["unpivot"].update(values=["s_1"]), "either values", id="unpivot-both"),
        pytest.param(wide, lambda d: d["unpivot"].__setitem__("key", "day"), "a name used twice",
                     id="unpivot-key-is-id"),
        pytest.param(wide, lambda d: d["columns"][1].__setitem__("source", "other"), "neither an unpivot id",
                     id="unpivot-column-reads-nothing"),
        pytest.param(wide, lambda d: d["columns"].pop(1) and d.__setitem__("keys", []), "unpivot.key: no declared",
                     id="unpivot-key-unread"),
        pytest.param(wide, lambda d: d["csv"].update(header="positional", names=["day", "s_1"]) if "csv" in d else
                     d.__setitem__("csv", {"header": "positional"}), "csv.names must name the wide columns",
                     id="unpivot-positional-without-names"),
        pytest.param(wide, lambda d: d.__setitem__("csv", {"header": "yes"}), "csv.header: must be true",
                     id="header-word"),
        pytest.param(wide, lambda d: d.__setitem__("csv", {"names": ["a"]}), "needs header: false or positional",
                     id="names-with-header"),
        pytest.param(wide, lambda d: d.pop("unpivot") and d.__setitem__("csv", {"header": False, "names": ["day"]}),
                     "which csv.names does not name", id="names-miss-a-column"),
        pytest.param(wide, lambda d: d["columns"][0].update(type="timestamp", zone="CET+1"), "is not a zone id",
                     id="bad-zone"),
        pytest.param(wide, lambda d: d["columns"][0].update(zone="Europe/Berlin"), "only a timestamp column",
                     id="zone-on-date"),
    ],
)
def test_new_shape_errors_name_the_bad_field(make, mutate, field):
    d = make()
    parse_contract(make())  # the unmutated contract is valid
    mutate(d)
    with pytest.raises(ContractError) as err:
        parse_contract(d)
    assert field in str(err.value)


def test_shapes_round_trip_through_the_plan():
    """A frozen plan's contract rebuilds the same Contract: catches parts or unpivot lost or left as lists."""
    for d in (wide(), parts()):
        c = parse_contract(d)
        assert contract_from_dict(c.to_dict()) == c
    c = parse_contract(parts())
    assert c.columns[0].parts == (("year", "Y"), ("month", "M")) and c.required_raw == ["Y", "M"]
