"""Index a Functions app with the real Python worker's loader, in a fresh process.

Usage: python worker_index.py <app_dir>  ->  prints JSON: {"functions": [...]} or {"error": "..."}

The worker (package azure-functions-runtime) is what the Functions host runs for Python 3.13; its
loader imports function_app.py, builds every function and validates parameters against bindings,
catching errors `app.get_functions()` alone misses (a parameter name that doesn't match its
binding, a bad output annotation). `protos` stands in for the generated gRPC classes, which only
the host ships.
"""

from __future__ import annotations

import json
import os
import sys
import types


class _Message:
    def __init__(self, **kwargs: object) -> None:
        self.__dict__.update(kwargs)


class BindingInfo(_Message):
    # Values of the protobuf enums BindingInfo.Direction and BindingInfo.DataType.
    in_ = 0
    out = 1
    inout = 2
    undefined = 0
    string = 1
    binary = 2
    stream = 3


setattr(BindingInfo, "in", 0)  # `in` is a keyword, but the worker reads protos.BindingInfo.in


def main(app_dir: str) -> int:
    os.chdir(app_dir)
    sys.path.insert(0, app_dir)
    from azure_functions_runtime import loader
    from azure_functions_runtime.bindings.meta import load_binding_registry
    from azure_functions_runtime.functions import Registry

    protos = types.SimpleNamespace(
        BindingInfo=BindingInfo, RpcFunctionMetadata=_Message, RpcRetryOptions=_Message
    )
    try:
        load_binding_registry()
        indexed = loader.index_function_app(os.path.join(app_dir, "function_app.py"))
        metadata, _ = loader.process_indexed_function(protos, Registry(), indexed, app_dir)
    except Exception as exc:  # report any indexing failure as data for the test
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 0
    functions = [
        {"name": m.name, "bindings": [json.loads(b) for b in m.raw_bindings]} for m in metadata
    ]
    print(json.dumps({"functions": functions}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
