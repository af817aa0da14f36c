"""Stand-in for orjson in the offline test only: the npm package ships no extra wheels.

A real Pyodide (JupyterLite) loads orjson from its own package index.
"""

import json

OPT_UTC_Z = OPT_NON_STR_KEYS = OPT_SERIALIZE_NUMPY = 0
JSONDecodeError = json.JSONDecodeError


class JSONEncodeError(TypeError):
    pass


def dumps(obj, default=None, option=0):
    try:
        return json.dumps(obj, default=default, separators=(",", ":")).encode()
    except (TypeError, ValueError) as err:
        raise JSONEncodeError(str(err)) from err


def loads(data):
    return json.loads(data)
