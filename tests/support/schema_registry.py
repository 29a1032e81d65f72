"""A test double of the Confluent Schema Registry REST API (the subset that the
confluent-kafka Python serializers and Hindsight's own registry client use).

No real Schema Registry can be installed on the test machines (it is a Java
server that no reachable package registry ships), so the schema-aware payload
tests (issue 17) run against this small stdlib-only server instead. The
schemas in it are registered by confluent-kafka's real AvroSerializer,
ProtobufSerializer and JSONSerializer (tests/support/schema_produce.py), so
the ids, references and schema strings are the ones those clients produce.
It is test support only: no compatibility checks, no deletes, no contexts.

usage: schema_registry.py [--port N] [--port-file F] [--user U:P] [--token T]
                          [--tls-cert PEM --tls-key KEY] [--log F] [--state F]

  --port N       port on 127.0.0.1 (0, the default, picks a free one)
  --port-file F  once listening, write the port to F (atomically: tmp + rename)
  --user U:P     require HTTP basic auth; anything else gets 401 {"error_code": 40101}
  --token T      require "Authorization: Bearer T" (with --user, either is accepted)
  --tls-cert PEM, --tls-key KEY
                 serve HTTPS with this certificate (the tests use the CA of
                 scripts/services.sh, $HINDSIGHT_TEST_TLS_DIR)
  --log F        append one line per request, "METHOD TARGET" (the request
                 target as sent: path and query string, still URL-encoded),
                 so tests can count requests (caching)
  --state F      load the schemas from F at start when it exists and save them
                 there after every change, so a restarted registry keeps them

Routes (content type application/vnd.schemaregistry.v1+json, errors as
{"error_code": N, "message": "..."}: 40401 subject not found, 40402 version
not found, 40403 schema not found, 42201 invalid schema, 42202 invalid version):

  POST /subjects/{s}/versions            register -> {"id", "guid", "subject", "version"}
  POST /subjects/{s}                     lookup -> {"subject", "id", "guid", "version", "schema", ...}
  GET  /schemas/ids/{id}                 {"schema", "schemaType" (not for AVRO), "references"?, "guid"}
  GET  /schemas/guids/{guid}             same, by the GUID that header-framed ids carry
  GET  /schemas/ids/{id}/versions        [{"subject", "version"}]
  GET  /schemas/ids/{id}/subjects        ["subject", ...]
  GET  /schemas/types                    ["AVRO", "JSON", "PROTOBUF"]
  GET  /subjects                         ["subject", ...] (?subjectPrefix= honoured)
  GET  /subjects/{s}/versions            [1, 2, ...]
  GET  /subjects/{s}/versions/{n|latest} {"subject", "version", "id", "guid", "schema", ...}
  GET  /subjects/{s}/versions/{n}/schema the schema string itself
  GET  /subjects/{s}/versions/{n}/referencedby  [id, ...]
  GET  /subjects/{s}/metadata            latest version whose metadata.properties match ?key=&value=
  GET|PUT /config[/{s}]                  {"compatibilityLevel": "NONE"} / accepted and echoed
  GET|PUT /mode[/{s}]                    {"mode": "READWRITE"} / accepted and echoed
  GET  /contexts                         ["."]
  GET  /associations/resources/{ns}/{r}  [] (the serializers' default subject name
                                         strategy asks; none means topic-name strategy)
  POST /compatibility/subjects/{s}/versions/{v}  {"is_compatible": true}
  GET  /hindsight-test/export            every (subject, version) as
                                         [{"id", "subject", "version", "schemaType", "schema", "references"}]

Query parameters such as ?normalize=, ?deleted=, ?format=, ?subject= are
accepted and ignored. Schemas are kept exactly as posted: the Python
ProtobufSerializer posts a base64 FileDescriptorProto, and that is what every
read returns (a real registry would answer .proto text unless asked for
?format=serialized). Identical (schemaType, schema, references) share one
global id (whitespace-insensitive for AVRO and JSON); the same schema posted
again under a subject returns its existing id and adds no version.
"""
import argparse
import base64
import json
import os
import ssl
import signal
import sys
import tempfile
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
GUID_NAMESPACE = uuid.UUID("5c1d5d5e-7f2e-4a38-9a64-1e5b0d6b1f17")


class RegistryError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def subject_not_found(subject):
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(version):
    return RegistryError(404, 40402, f"Version {version} not found.")


def schema_not_found(what="Schema not found"):
    return RegistryError(404, 40403, what)


def invalid_schema(why):
    return RegistryError(422, 42201, f"Invalid schema: {why}")


def norm_type(schema_type):
    return (schema_type or "AVRO").upper()


def norm_refs(refs):
    return [{"name": r.get("name"), "subject": r.get("subject"), "version": r.get("version")}
            for r in refs or []]


class Store:
    """All registry state, behind one lock. Saved to --state after changes."""

    def __init__(self, state_path=None):
        self.lock = threading.Lock()
        self.state_path = state_path
        self.schemas = {}  # id -> {"schemaType", "schema", "references", "guid", "metadata"?, "ruleSet"?}
        self.subjects = {}  # subject -> [id of version 1, id of version 2, ...]
        self.config = {"": "NONE"}  # "" is the global level
        self.modes = {"": "READWRITE"}
        self.next_id = 1
        if state_path and os.path.exists(state_path):
            with open(state_path, encoding="utf-8") as f:
                data = json.load(f)
            self.schemas = {int(k): v for k, v in data["schemas"].items()}
            self.subjects = data["subjects"]
            self.config = data.get("config", self.config)
            self.modes = data.get("modes", self.modes)
            self.next_id = data.get("next_id", max(self.schemas, default=0) + 1)

    def save(self):
        if not self.state_path:
            return
        data = {"next_id": self.next_id, "schemas": {str(k): v for k, v in self.schemas.items()},
                "subjects": self.subjects, "config": self.config, "modes": self.modes}
        directory = os.path.dirname(os.path.abspath(self.state_path))
        fd, tmp = tempfile.mkstemp(prefix=".registry-state-", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, self.state_path)

    @staticmethod
    def identity(schema_type, schema, refs):
        text = schema
        if schema_type in ("AVRO", "JSON"):
            try:
                text = json.dumps(json.loads(schema), separators=(",", ":"), sort_keys=False)
            except ValueError:
                pass
        return json.dumps([schema_type, text, norm_refs(refs)])

    def find_id(self, key):
        for sid, s in self.schemas.items():
            if s["key"] == key:
                return sid
        return None

    def version_ids(self, subject):
        ids = self.subjects.get(subject)
        if not ids:
            raise subject_not_found(subject)
        return ids

    def resolve_version(self, subject, version):
        ids = self.version_ids(subject)
        if version in ("latest", "-1"):
            return len(ids), ids[-1]
        try:
            n = int(version)
        except ValueError:
            raise RegistryError(422, 42202,
                                f"The specified version '{version}' is not a valid version id.")
        if n < 1 or n > len(ids):
            raise version_not_found(version)
        return n, ids[n - 1]

    def check_body(self, body):
        if not isinstance(body, dict):
            raise RegistryError(422, 42201, "Invalid schema: request body must be a JSON object")
        schema = body.get("schema")
        if not isinstance(schema, str) or not schema.strip():
            raise invalid_schema("empty or missing 'schema'")
        schema_type = norm_type(body.get("schemaType"))
        if schema_type not in ("AVRO", "JSON", "PROTOBUF"):
            raise invalid_schema(f"unknown schemaType '{schema_type}'")
        if schema_type in ("AVRO", "JSON"):
            try:
                json.loads(schema)
            except ValueError as e:
                raise invalid_schema(f"not JSON: {e}")
        refs = body.get("references") or []
        if not isinstance(refs, list):
            raise invalid_schema("'references' must be a list")
        for r in refs:
            if not isinstance(r, dict) or not r.get("name") or not r.get("subject") \
                    or not isinstance(r.get("version"), int):
                raise invalid_schema(f"bad reference {r!r}")
            ids = self.subjects.get(r["subject"]) or []
            if not 1 <= r["version"] <= len(ids):
                raise invalid_schema(
                    f"reference {r['name']!r}: subject {r['subject']!r} version {r['version']} not found")
        return schema_type, schema, refs

    def register(self, subject, body):
        schema_type, schema, refs = self.check_body(body)
        key = self.identity(schema_type, schema, refs)
        ids = self.subjects.setdefault(subject, [])
        for n, sid in enumerate(ids, 1):
            if self.schemas[sid]["key"] == key:
                return sid, n
        sid = self.find_id(key)
        if sid is None:
            sid = self.next_id
            self.next_id += 1
            entry = {"key": key, "schemaType": schema_type, "schema": schema,
                     "references": norm_refs(refs),
                     "guid": str(uuid.uuid5(GUID_NAMESPACE, key))}
            for extra in ("metadata", "ruleSet"):
                if body.get(extra) is not None:
                    entry[extra] = body[extra]
            self.schemas[sid] = entry
        ids.append(sid)
        self.save()
        return sid, len(ids)

    def lookup(self, subject, body):
        schema_type, schema, refs = self.check_body(body)
        key = self.identity(schema_type, schema, refs)
        ids = self.version_ids(subject)
        for n, sid in enumerate(ids, 1):
            if self.schemas[sid]["key"] == key:
                return self.version_view(subject, n, sid)
        raise schema_not_found()

    def schema_view(self, sid):
        s = self.schemas[sid]
        out = {"schema": s["schema"]}
        if s["schemaType"] != "AVRO":
            out["schemaType"] = s["schemaType"]
        if s["references"]:
            out["references"] = s["references"]
        for extra in ("metadata", "ruleSet"):
            if extra in s:
                out[extra] = s[extra]
        out["guid"] = s["guid"]
        return out

    def version_view(self, subject, version, sid):
        return {"subject": subject, "version": version, "id": sid, **self.schema_view(sid)}

    def by_id(self, raw):
        try:
            sid = int(raw)
        except ValueError:
            raise schema_not_found(f"Schema {raw} not found")
        if sid not in self.schemas:
            raise schema_not_found(f"Schema {sid} not found")
        return sid

    def by_guid(self, guid):
        for sid, s in self.schemas.items():
            if s["guid"] == guid.lower():
                return sid
        raise schema_not_found(f"Schema {guid} not found")

    def usages(self, sid):
        return [(subject, n) for subject, ids in sorted(self.subjects.items())
                for n, i in enumerate(ids, 1) if i == sid]

    def export(self):
        rows = []
        for subject, ids in self.subjects.items():
            for n, sid in enumerate(ids, 1):
                s = self.schemas[sid]
                rows.append({"id": sid, "subject": subject, "version": n,
                             "schemaType": s["schemaType"], "schema": s["schema"],
                             "references": s["references"]})
        rows.sort(key=lambda r: (r["id"], r["subject"], r["version"]))
        return rows


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hindsight-test-schema-registry/1"
    store: Store = None
    auth = None  # the accepted Authorization header values ("Basic ...", "Bearer ..."), or None
    log_path = None
    log_lock = threading.Lock()

    def log_message(self, fmt, *args):  # keep stderr quiet
        pass

    def _log(self):
        if self.log_path:
            with self.log_lock, open(self.log_path, "a", encoding="utf-8") as f:
                f.write(f"{self.command} {self.path}\n")

    def _read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status, payload, raw=False, extra_headers=()):
        body = payload.encode() if raw else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8" if raw else CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status, code, message, extra_headers=()):
        self._send(status, {"error_code": code, "message": message}, extra_headers=extra_headers)

    def _handle(self):
        self._log()
        raw_body = self._read_body()
        if self.auth is not None and self.headers.get("Authorization") not in self.auth:
            self._error(401, 40101, "Unauthorized: missing or wrong credentials",
                        [("WWW-Authenticate", 'Basic realm="SchemaRegistry"')])
            return
        split = urllib.parse.urlsplit(self.path)
        # Split before decoding: a subject may hold an encoded "/".
        parts = [urllib.parse.unquote(p) for p in split.path.strip("/").split("/") if p != ""]
        query = urllib.parse.parse_qs(split.query)
        body = None
        if raw_body:
            try:
                body = json.loads(raw_body)
            except ValueError as e:
                self._error(400, 50005, f"Unrecognized JSON body: {e}")
                return
        try:
            with self.store.lock:
                result = self.route(self.command, parts, query, body)
        except RegistryError as e:
            self._error(e.status, e.code, e.message)
            return
        except Exception as e:  # a bug here must show as a 500, not a hang
            self._error(500, 50001, f"{type(e).__name__}: {e}")
            return
        status, payload, raw = result if len(result) == 3 else (*result, False)
        self._send(status, payload, raw=raw)

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def route(self, method, p, q, body):
        st = self.store
        n = len(p)
        if method == "GET" and n == 0:
            return 200, {}
        if p[:1] == ["subjects"]:
            if method == "GET" and n == 1:
                prefix = (q.get("subjectPrefix") or [""])[0]
                return 200, sorted(s for s in st.subjects if s.startswith(prefix))
            subject = p[1] if n > 1 else None
            if method == "POST" and n == 2:
                return 200, st.lookup(subject, body)
            if n >= 3 and p[2] == "versions":
                if method == "POST" and n == 3:
                    sid, version = st.register(subject, body)
                    return 200, {"id": sid, "guid": st.schemas[sid]["guid"],
                                 "subject": subject, "version": version}
                if method == "GET" and n == 3:
                    return 200, list(range(1, len(st.version_ids(subject)) + 1))
                if method == "GET" and n == 4:
                    version, sid = st.resolve_version(subject, p[3])
                    return 200, st.version_view(subject, version, sid)
                if method == "GET" and n == 5 and p[4] == "schema":
                    _, sid = st.resolve_version(subject, p[3])
                    return 200, st.schemas[sid]["schema"], True
                if method == "GET" and n == 5 and p[4] == "referencedby":
                    version, _ = st.resolve_version(subject, p[3])
                    return 200, sorted(sid for sid, s in st.schemas.items()
                                       if any(r["subject"] == subject and r["version"] == version
                                              for r in s["references"]))
            if method == "GET" and n == 3 and p[2] == "metadata":
                ids = st.version_ids(subject)
                want = dict(zip(q.get("key", []), q.get("value", [])))
                for version in range(len(ids), 0, -1):
                    props = ((st.schemas[ids[version - 1]].get("metadata") or {})
                             .get("properties") or {})
                    if all(props.get(k) == v for k, v in want.items()):
                        return 200, st.version_view(subject, version, ids[version - 1])
                raise schema_not_found(f"No version of subject '{subject}' has metadata {want}")
        if p[:1] == ["schemas"]:
            if method == "GET" and p[1:] == ["types"]:
                return 200, ["AVRO", "JSON", "PROTOBUF"]
            if method == "GET" and n >= 3 and p[1] in ("ids", "guids"):
                sid = st.by_id(p[2]) if p[1] == "ids" else st.by_guid(p[2])
                if n == 3:
                    view = st.schema_view(sid)
                    if p[1] == "guids":
                        view["id"] = sid
                    return 200, view
                if n == 4 and p[3] == "versions":
                    return 200, [{"subject": s, "version": v} for s, v in st.usages(sid)]
                if n == 4 and p[3] == "subjects":
                    return 200, sorted({s for s, _ in st.usages(sid)})
                if n == 4 and p[3] == "schema":
                    return 200, st.schemas[sid]["schema"], True
        if p[:1] in (["config"], ["mode"]):
            table, field = (st.config, "compatibilityLevel") if p[0] == "config" else (st.modes, "mode")
            scope = p[1] if n == 2 else ""
            if n <= 2 and method == "GET":
                return 200, {field: table.get(scope, table[""])}
            if n <= 2 and method == "PUT":
                key = "compatibility" if p[0] == "config" else "mode"
                value = (body or {}).get(key) or (body or {}).get(field)
                if not value:
                    raise RegistryError(422, 42203, f"Missing '{key}' in the request body")
                table[scope] = str(value).upper()
                st.save()
                return 200, {key: table[scope]}
        if method == "GET" and p == ["contexts"]:
            return 200, ["."]
        if method == "GET" and p[:2] == ["associations", "resources"]:
            return 200, []
        if method == "POST" and p[:2] == ["compatibility", "subjects"]:
            return 200, {"is_compatible": True}
        if method == "GET" and p == ["hindsight-test", "export"]:
            return 200, st.export()
        if method not in ("GET", "POST", "PUT"):
            raise RegistryError(405, 405, f"{method} is not supported by this test registry")
        raise RegistryError(404, 404, f"HTTP 404 Not Found: {method} {self.path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--user", help="U:P, require HTTP basic auth")
    ap.add_argument("--token", help="require this bearer token")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--log")
    ap.add_argument("--state")
    args = ap.parse_args()

    Handler.store = Store(args.state)
    Handler.log_path = args.log
    if args.user:
        if ":" not in args.user:
            ap.error("--user must be USER:PASSWORD")
        Handler.auth = {"Basic " + base64.b64encode(args.user.encode()).decode()}
    if args.token:
        Handler.auth = (Handler.auth or set()) | {f"Bearer {args.token}"}

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    scheme = "http"
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    server.daemon_threads = True
    port = server.server_address[1]
    if args.port_file:
        directory = os.path.dirname(os.path.abspath(args.port_file))
        fd, tmp = tempfile.mkstemp(prefix=".registry-port-", dir=directory)
        with os.fdopen(fd, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    print(f"schema registry test double listening on {scheme}://127.0.0.1:{port}", flush=True)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
