"""The Azure infrastructure (infra/, azure.yaml) agrees with the code it deploys.

- Every Bicep file parses. The Bicep CLI can't be installed here (it downloads a native binary),
  so the files are parsed with pycep-parser, the parser checkov's Bicep scan uses: a file it cannot
  parse would be skipped by the scan without a failure, so parsing is checked here.
- The app settings main.bicep sets are exactly the settings the code (shared/config.py) and the
  bindings (the real worker's index) read, in both directions, with the documented exceptions.
- The queues, sessions, lag thresholds, outputs, parameters and the Flex Consumption runtime
  match the app.

Sources for the platform rules encoded below:
- Learn, "App settings reference for Azure Functions", section "Flex Consumption plan
  deprecations": FUNCTIONS_WORKER_RUNTIME is replaced by functionAppConfig.runtime.name.
- Azure/azure-functions-host PR #9574 "Enable worker indexing by default" (host v4.28):
  AzureWebJobsFeatureFlags=EnableWorkerIndexing is no longer needed.
- Learn, "Azure Functions developer guide", identity-based connections: a connection named X is
  given as X__accountName / X__fullyQualifiedNamespace (or X__serviceUri ...), qualified by
  X__credential=managedidentity and X__clientId for a user-assigned identity.
"""

from __future__ import annotations

import functools
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pycep import BicepParser

from shared.config import Settings, load_settings
from tests.indexing.checks import ROOT, index

pytestmark = pytest.mark.unit

INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
_SETTING_REF = re.compile(r"%([^%]+)%")

# Read locally, never set in Azure.
LOCAL_ONLY = {
    "AZURE_CLIENT_SECRET": (
        "the sandbox client's secret for ClientSecretCredential (shared/identity.py); in Azure the "
        "user-assigned managed identity authenticates, so there is no secret to set"
    ),
    "HUB_CA_BUNDLE": (
        "trusts the sandbox's private CA for TLS to the local peers; Azure endpoints present "
        "publicly trusted certificates"
    ),
}
# Read by the host locally, provided otherwise by the platform in Azure.
PLATFORM_MANAGED = {
    "FUNCTIONS_WORKER_RUNTIME": (
        "Flex Consumption takes the worker runtime from functionAppConfig.runtime and deprecates "
        "the app setting"
    ),
    "AzureWebJobsFeatureFlags": (
        "EnableWorkerIndexing is the host's default since v4.28; only old local Core Tools need it"
    ),
}
# Set in Azure and read by the Functions host itself rather than by our code or a binding.
READ_BY_HOST = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "where the host sends telemetry",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": (
        "Entra authentication of that telemetry with the managed identity; the component refuses "
        "instrumentation-key ingestion"
    ),
}
# X__<locator> names the service of an identity-based connection X; X__<qualifier> configures it.
CONNECTION_LOCATORS = (
    "__accountName",
    "__fullyQualifiedNamespace",
    "__serviceUri",
    "__blobServiceUri",
)
CONNECTION_QUALIFIERS = ("__credential", "__clientId")
# siteConfig properties Flex Consumption rejects or ignores (the runtime lives in functionAppConfig).
FLEX_REJECTED_SITE_CONFIG = {
    "linuxFxVersion",
    "pythonVersion",
    "alwaysOn",
    "ftpsState",
    "use32BitWorkerProcess",
    "preWarmedInstanceCount",
    "functionAppScaleLimit",
    "functionsRuntimeScaleMonitoringEnabled",
}


# ---- Bicep as data --------------------------------------------------------------------------


@functools.cache
def parse(path: Path) -> dict[str, Any]:
    """The pycep JSON of one Bicep file (cached: parsing is the slow part)."""
    return BicepParser().parse(file_path=path)


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def _unquote(key: str) -> str:
    return key[1:-1] if key.startswith("'") and key.endswith("'") else key


def _accessor(value: Any) -> tuple[str, ...] | None:
    """``a.b.c`` as ('a', 'b', 'c'); None for anything that is not a plain property access."""
    if not (isinstance(value, dict) and "operator" in value):
        return None
    operator = value["operator"]
    if operator.get("type") != "property_accessor":
        return None
    first = operator["operands"]["operand_1"]
    rest = operator["operands"]["operand_2"]
    if not isinstance(first, str):
        return None
    if isinstance(rest, str):
        return (first, rest)
    tail = _accessor(rest)
    return (first, *tail) if tail else None


class MainBicep:
    """main.bicep's parameters, variables and outputs, with literal values resolved."""

    def __init__(self, tree: dict[str, Any]) -> None:
        self.params: dict[str, Any] = tree["parameters"]
        self.variables: dict[str, Any] = {k: v["value"] for k, v in tree["variables"].items()}
        self.outputs: dict[str, Any] = tree["outputs"]
        self.modules: dict[str, Any] = tree["modules"]
        self.app_settings: dict[str, Any] = {
            _unquote(k): v for k, v in self.variables["appSettings"].items()
        }

    def resolve(self, value: Any) -> Any:
        """The deploy-time-constant value of an expression (a literal, a parameter's default, a
        variable or a property of a literal variable); None when it is only known at deployment
        (resource outputs, functions) or a parameter without default."""
        if isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            if value in self.params:
                return self.params[value].get("default")
            if value in self.variables:
                return self.resolve(self.variables[value])
            return None if "${" in value else value
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        path = _accessor(value)
        if path is not None and path[0] in self.variables:
            current: Any = self.resolve(path[0])
            for name in path[1:]:
                if not isinstance(current, dict) or name not in current:
                    return None
                current = self.resolve(current[name])
            return current
        if isinstance(value, dict) and not {"operator", "function"} & set(value):
            return {_unquote(k): self.resolve(v) for k, v in value.items()}
        return None


@pytest.fixture(scope="module")
def main() -> MainBicep:
    return MainBicep(parse(MAIN))


@pytest.fixture(scope="module")
def functions() -> list[dict[str, Any]]:
    result = index(ROOT)
    assert "error" not in result, result.get("error")
    return list(result["functions"])


# ---- What the app reads ---------------------------------------------------------------------


def code_settings() -> set[str]:
    """Every setting shared/config.py reads, by its environment name."""
    names = set()
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        names.add(str(alias.choices[0]) if alias is not None else field.upper())  # type: ignore[union-attr]
    return names


def documented_settings() -> set[str]:
    """Every setting docs/settings.md lists (the code's, the bindings' and the host's)."""
    text = (ROOT / "docs" / "settings.md").read_text()
    return set(re.findall(r"^\| `([^`]+)` \|", text, re.M))


def binding_settings(functions: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """(connections, %Settings%) referenced by the bindings of the indexed functions."""
    connections: set[str] = set()
    referenced: set[str] = set()
    for function in functions:
        for binding in function["bindings"]:
            if binding.get("connection"):
                connections.add(str(binding["connection"]))
            for value in binding.values():
                if isinstance(value, str):
                    referenced.update(_SETTING_REF.findall(value))
    return connections, referenced


def unset_settings(read: set[str], connections: set[str], bicep: set[str]) -> set[str]:
    """Settings the app reads that main.bicep neither sets nor satisfies another way."""
    missing = set()
    for name in read - set(LOCAL_ONLY) - set(PLATFORM_MANAGED):
        base, _, _ = name.partition("__")
        if name in bicep:
            continue
        if base in connections and any(base + loc in bicep for loc in CONNECTION_LOCATORS):
            # X (a connection string locally) is satisfied by its identity-based form, and so are
            # the alternative identity-based spellings of the same connection.
            continue
        missing.add(name)
    return missing


def unread_settings(read: set[str], connections: set[str], bicep: set[str]) -> set[str]:
    """Settings main.bicep sets that neither the app nor the host reads."""
    unread = set()
    for name in bicep:
        base, sep, rest = name.partition("__")
        if name in read or name in READ_BY_HOST:
            continue
        if (
            sep
            and base in connections
            and f"__{rest}" in CONNECTION_LOCATORS + CONNECTION_QUALIFIERS
        ):
            continue
        unread.add(name)
    return unread


def app_reads(functions: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """(every setting the code, a binding or the host reads; every connection name)."""
    connections, referenced = binding_settings(functions)
    # The host's own storage connection is read by the host whatever the bindings say.
    connections.add("AzureWebJobsStorage")
    return code_settings() | documented_settings() | referenced | connections, connections


# ---- Parsing --------------------------------------------------------------------------------


def test_infra_has_main_and_its_modules():
    # Given the infra folder
    # Then main.bicep exists, every module it (or a module) references exists, and nothing else
    referenced = set()
    for path in bicep_files():
        for module in parse(path).get("modules", {}).values():
            target = (path.parent / module["detail"]["path"]).resolve()
            assert target.exists(), f"{path.name} references missing module {target}"
            referenced.add(target)
    assert MAIN.exists()
    assert set(bicep_files()) - {MAIN} == referenced, "unreferenced Bicep files in infra/"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path):
    # Given one Bicep file
    # When pycep (checkov's parser) parses it
    tree = parse(path)
    # Then it yields resources or modules, so checkov's scan actually sees them
    assert tree.get("resources") or tree.get("modules"), f"{path.name} declares nothing"


def test_the_parser_refuses_malformed_bicep():
    # Given a resource declaration cut short
    # Then the parser raises, so the parse test above can fail
    with pytest.raises(Exception, match=r"(?i)unexpected"):
        BicepParser().parse(
            text="resource broken 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n"
        )


def test_every_checkov_skip_carries_its_justification():
    # Given every checkov suppression in infra/
    skips = [
        (path.name, match.group(1), match.group(2).strip())
        for path in bicep_files()
        for match in re.finditer(r"checkov:skip=([A-Z0-9_]+):?([^\n]*)", path.read_text())
    ]
    # Then each names a check and says why, beside the resource it suppresses
    assert skips, "expected the documented suppressions"
    for file, check, reason in skips:
        assert len(reason) >= 40, f"{file}: {check} is skipped without a real justification"


# ---- Settings consistency -------------------------------------------------------------------


def test_every_setting_the_app_reads_is_set_by_main_bicep(main, functions):
    # Given every setting the code, the bindings or the host reads
    read, connections = app_reads(functions)
    # When compared with the app settings main.bicep assembles
    missing = unset_settings(read, connections, set(main.app_settings))
    # Then each is set, or satisfied by an identity-based connection, or is a documented exception
    assert missing == set(), f"main.bicep does not set: {sorted(missing)}"


def test_every_setting_main_bicep_sets_is_read(main, functions):
    # Given the app settings main.bicep assembles
    read, connections = app_reads(functions)
    # Then the code, a binding or the host reads each one
    unread = unread_settings(read, connections, set(main.app_settings))
    assert unread == set(), f"main.bicep sets settings nothing reads: {sorted(unread)}"


def test_local_only_and_platform_settings_are_not_set_in_azure(main):
    # Given the settings that exist only on a developer's machine or that the platform owns
    forbidden = set(LOCAL_ONLY) | set(PLATFORM_MANAGED) | {"WEBSITE_RUN_FROM_PACKAGE"}
    # Then main.bicep sets none of them (FUNCTIONS_WORKER_RUNTIME would conflict with Flex)
    assert forbidden & set(main.app_settings) == set()
    # And the exceptions are all still settings the app knows about
    assert set(LOCAL_ONLY) <= code_settings()
    assert set(PLATFORM_MANAGED) <= documented_settings()


def test_connections_are_identity_based_with_the_user_assigned_identity(main, functions):
    # Given every connection the host and the bindings use
    _, connections = app_reads(functions)
    settings = main.app_settings
    for connection in connections:
        # Then no connection string is set, only the identity-based form
        assert connection not in settings, f"{connection} must not be a connection string"
        assert any(connection + loc in settings for loc in CONNECTION_LOCATORS), connection
        # And it uses the managed identity whose client id the app runs as
        assert main.resolve(settings[connection + "__credential"]) == "managedidentity"
        assert _accessor(settings[connection + "__clientId"]) == ("identity", "outputs", "clientId")
    assert _accessor(settings["AZURE_CLIENT_ID"]) == ("identity", "outputs", "clientId")
    assert main.resolve(settings["LAKE_USE_EMULATOR"]) == "false"


def test_the_consistency_checks_catch_a_forgotten_and_a_stray_setting():
    # Given a world where the app reads A and the connection Bus, and Bicep sets B and Bus__x
    read, connections = {"A", "Bus"}, {"Bus"}
    bicep = {"B", "Bus__fullyQualifiedNamespace", "Bus__credential", "Bus__x"}
    # Then A is reported unset, and B and the unknown Bus__x unread
    assert unset_settings(read, connections, bicep) == {"A"}
    assert unread_settings(read, connections, bicep) == {"B", "Bus__x"}


def _azure_environment(main: MainBicep) -> tuple[dict[str, str], set[str]]:
    """The app settings as Azure would hold them: deploy-time constants as resolved, values known
    only at deployment replaced by well-formed stand-ins. Returns (settings, resolved names)."""
    environment: dict[str, str] = {}
    resolved: set[str] = set()
    for name, expression in main.app_settings.items():
        value = main.resolve(expression)
        if value is None:
            if name.endswith(("_URL", "_HOST")):
                value = "https://stand-in.example/"
            elif name == "AZURE_TENANT_ID":
                value = "00000000-0000-0000-0000-000000000000"
            else:
                value = "stand-in"
        else:
            resolved.add(name)
        environment[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return environment, resolved


def test_azure_settings_validate_and_defaults_match_shared_config(main):
    # Given the settings main.bicep gives the app
    environment, resolved = _azure_environment(main)
    # When the app validates them as it does on first use
    settings = load_settings(environment)
    # Then they are valid (schedules are six-field NCRONTAB, secret names well-formed, ...)
    assert settings.lake_use_emulator is False
    assert settings.azure_client_secret is None
    assert settings.storage_configured() and settings.service_bus_configured()
    # And every constant main.bicep sets equals shared/config.py's default for it
    by_env = {}
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        by_env[str(alias.choices[0]) if alias is not None else field.upper()] = (field, info)  # type: ignore[union-attr]
    for name in sorted(resolved & set(by_env)):
        field, info = by_env[name]
        if info.is_required() or info.default is None:
            continue
        assert getattr(settings, field) == info.default, f"{name} differs from shared/config.py"


# ---- Queues, timers, runtime ----------------------------------------------------------------


def test_every_bound_queue_is_provisioned_with_the_sessions_its_binding_expects(main, functions):
    # Given the queues main.bicep provisions
    provisioned = {q["name"]: q["requiresSession"] for q in main.resolve("queues")}
    # When each Service Bus binding's queue is resolved through the app settings
    for function in functions:
        for binding in function["bindings"]:
            if not str(binding["type"]).startswith("serviceBus"):
                continue
            (setting,) = _SETTING_REF.findall(binding["queueName"])
            queue = main.resolve(main.app_settings[setting])
            # Then it exists, session-enabled exactly when the trigger expects sessions
            assert queue in provisioned, f"{function['name']}: queue {queue} is not provisioned"
            if binding["type"] == "serviceBusTrigger":
                assert provisioned[queue] == bool(binding.get("isSessionsEnabled", False)), queue


def test_every_queue_setting_names_a_provisioned_queue(main):
    # Given the queue-name settings (some name queues of flows whose functions may come later)
    provisioned = {q["name"]: q["requiresSession"] for q in main.resolve("queues")}
    queue_settings = {n for n in main.app_settings if n.endswith("_QUEUE_NAME")}
    documented = (ROOT / "docs" / "settings.md").read_text()
    # Then each names a provisioned queue, and the ones documented as session-enabled have sessions
    assert queue_settings == {n for n in code_settings() if n.endswith("_QUEUE_NAME")}
    for name in queue_settings:
        queue = main.resolve(main.app_settings[name])
        assert queue in provisioned, name
        row = next(line for line in documented.splitlines() if line.startswith(f"| `{name}` |"))
        assert provisioned[queue] == ("session-enabled" in row.lower()), name


def test_queues_dead_letter_on_expiry_detect_duplicates_and_bound_deliveries():
    # Given the queue resource of the Service Bus module
    tree = parse(INFRA / "modules" / "service-bus.bicep")
    loop = tree["resources"]["queueResources"]["config"]
    assert loop["loop_type"]["detail"]["array_name"] == "queues"
    queue = loop["config"]["properties"]
    # Then every queue has duplicate detection, dead-lettering on expiry and a max delivery count
    assert queue["requiresDuplicateDetection"] is True
    assert queue["deadLetteringOnMessageExpiration"] is True
    assert queue["maxDeliveryCount"] == "maxDeliveryCount"


def test_every_scheduled_function_has_a_job_lag_threshold(main, functions):
    # Given the timer functions the worker indexes
    timers = {
        f["name"] for f in functions if any(b["type"] == "timerTrigger" for b in f["bindings"])
    }
    # Then the lag alert knows each of them, and only them, with a positive threshold
    thresholds = main.params["jobLagThresholdMinutes"]["default"]
    assert set(thresholds) == timers
    assert all(int(minutes) > 0 for minutes in thresholds.values())


def test_the_function_app_runs_python_3_13_on_flex_consumption(main):
    # Given the Function App module and the project's Python requirement
    tree = parse(INFRA / "modules" / "function-app.bicep")
    plan = tree["resources"]["plan"]["config"]
    site = tree["resources"]["site"]["config"]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    wanted = re.search(r">=\s*(\d+\.\d+)", requires).group(1)  # type: ignore[union-attr]
    # Then the plan is Flex Consumption and the runtime is set where Flex reads it
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    runtime = site["properties"]["functionAppConfig"]["runtime"]
    assert runtime == {"name": "python", "version": "pythonVersion"}
    assert main.modules["functionApp"]["config"]["params"]["pythonVersion"] == wanted == "3.13"
    # And siteConfig carries none of the properties Flex rejects, and the settings only from main
    site_config = site["properties"]["siteConfig"]
    assert FLEX_REJECTED_SITE_CONFIG & set(site_config) == set()
    assert site_config["appSettings"] == "siteAppSettings"
    assert main.modules["functionApp"]["config"]["params"]["appSettings"] == "appSettings"
    # And the app runs as the user-assigned identity, which also reads the deployment container
    assert site["identity"]["type"] == "UserAssigned"
    deployment = site["properties"]["functionAppConfig"]["deployment"]["storage"]
    assert deployment["authentication"]["type"] == "UserAssignedIdentity"


# ---- azd conventions ------------------------------------------------------------------------


def test_azure_yaml_deploys_this_folder_to_the_tagged_function_app(main):
    # Given azure.yaml
    project = yaml.safe_load((ROOT / "azure.yaml").read_text())
    (service_name, service), *others = project["services"].items()
    # Then its one service is this folder, a Python function app, found by the tag main.bicep sets
    assert others == []
    assert service == {"project": ".", "language": "python", "host": "function"}
    assert main.modules["functionApp"]["config"]["params"]["serviceName"] == service_name
    assert f"SERVICE_{service_name.upper()}_NAME" in main.outputs
    assert project["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}


def test_parameters_file_feeds_every_required_parameter_from_the_azd_environment(main):
    # Given main.parameters.json
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    # Then it names only main.bicep parameters, each from an azd environment variable
    assert set(parameters) <= set(main.params)
    for name, entry in parameters.items():
        assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*\}", entry["value"]), name
    # And every parameter without a default is among them (azd prompts when the variable is unset)
    required = {name for name, p in main.params.items() if p.get("default") is None}
    assert required <= set(parameters)
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"


def test_outputs_named_like_app_settings_carry_the_app_settings_values(main):
    # Given the outputs azd writes to the environment
    mirrored = {name: out for name, out in main.outputs.items() if name in main.app_settings}
    # Then each one named like an app setting is that setting's value
    assert len(mirrored) >= 10
    for name, output in mirrored.items():
        assert _accessor(output["value"]) == ("appSettings", name), name
    # And the identity's client id is there under a name a shell's azure-identity won't pick up
    assert "AZURE_CLIENT_ID" not in main.outputs
    assert _accessor(main.outputs["HUB_IDENTITY_CLIENT_ID"]["value"]) == (
        "appSettings",
        "AZURE_CLIENT_ID",
    )
    for required in ("AZURE_LOCATION", "AZURE_TENANT_ID", "AZURE_RESOURCE_GROUP"):
        assert required in main.outputs


def test_the_key_vault_secret_names_are_the_ones_the_settings_name(main):
    # Given the secret names main.bicep lists as an output
    listed = main.resolve(main.outputs["KEY_VAULT_SECRET_NAMES"]["value"])
    # Then they are exactly the values of the *_SECRET_NAME settings
    named = {
        main.resolve(value)
        for name, value in main.app_settings.items()
        if name.endswith("_SECRET_NAME")
    }
    assert set(listed) == named
    assert (
        len(listed) == len(named) == len([n for n in code_settings() if n.endswith("_SECRET_NAME")])
    )
