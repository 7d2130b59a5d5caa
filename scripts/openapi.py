import json
S = lambda **k: k
def ref(n): return {"$ref": f"#/components/schemas/{n}"}
def nstr(): return {"type": "string", "nullable": True}
def nint(): return {"type": "integer", "nullable": True}
def obj(props, req=None, extra=False):
    o = {"type": "object", "properties": props, "required": req if req is not None else list(props)}
    if not extra: o["additionalProperties"] = False
    return o
def page(item): return obj({"page": {"type": "integer"}, "per_page": {"type": "integer"}, "total": {"type": "integer"}, "items": {"type": "array", "items": item}})
err = {"description": "error", "content": {"application/json": {"schema": ref("Error")}}}
def resp(schema, code="200", desc="ok", errs=("400", "401", "403", "404")):
    r = {code: {"description": desc, "content": {"application/json": {"schema": schema}}}}
    for e in errs: r[e] = err
    return r
def q(name, schema, desc=""):
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": desc}
def p(name, desc=""):
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}, "description": desc}
paging = [q("page", {"type": "integer", "minimum": 1, "maximum": 100000}, "1-based page"), q("per_page", {"type": "integer", "minimum": 1, "maximum": 500}, "items per page (default 50)")]
KINDS = ["token_replay", "impossible_travel", "suspicious_network", "bulk_siphon", "enumeration"]
SEV = ["low", "medium", "high", "critical"]
STATUS = ["open", "acknowledged", "resolved", "false_positive"]
ACTION_STATES = ["pending", "dispatched", "done", "failed", "observed", "awaiting_approval", "rejected", "skipped", "digest", "no_endpoint"]
TIME = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "pattern": "^[0-9]{1,15}$"}]}
schemas = {
  "Error": obj({"error": {"type": "string"}, "message": {"type": "string", "description": "what went wrong and what to do; never internals"}}),
  "Me": obj({"name": {"type": "string"}, "role": {"type": "string", "enum": ["viewer", "responder", "admin"]}}),
  "Incident": obj({"id": {"type": "string"}, "key": {"type": "string", "description": "sub:<subject> or tok:<token_id>"},
     "subject": nstr(), "token_id": nstr(), "client_id": nstr(), "kinds": {"type": "array", "items": {"type": "string"}},
     "severity": {"type": "string", "enum": SEV}, "status": {"type": "string", "enum": STATUS}, "findings": {"type": "integer"},
     "revoked": {"type": "boolean"}, "opened_ts": {"type": "integer", "description": "event time, ms"}, "last_ts": {"type": "integer"}}),
  "Finding": {"type": "object", "description": "a finding as produced to the findings topic (see README)",
     "required": ["id", "kind", "severity", "token_id", "event_time", "summary", "evidence"],
     "properties": {"id": {"type": "string"}, "kind": {"type": "string", "enum": KINDS}, "severity": {"type": "string", "enum": SEV},
        "token_id": {"type": "string"}, "event_time": {"type": "string"}, "summary": {"type": "string"}, "evidence": {"type": "object"}}},
  "Action": obj({"id": {"type": "string"}, "incident_id": {"type": "string"}, "kind": {"type": "string", "enum": ["revoke", "alert", "resolve"]},
     "rule": {"type": "string"}, "state": {"type": "string"}, "why": {"type": "string"}, "token_id": {"type": "string"},
     "event_ts": {"type": "integer"}, "created_ms": {"type": "integer"}, "summary": {"type": "string"}}),
  "Delivery": obj({"id": {"type": "string"}, "action_id": {"type": "string"}, "endpoint": {"type": "string"}, "kind": {"type": "string"},
     "state": {"type": "string"}, "attempts": {"type": "integer"}, "last_status": nint(), "last_error": nstr(), "detail": nstr()}),
  "AuditEntry": obj({"seq": {"type": "integer"}, "at_ms": {"type": "integer", "description": "wall clock, ms"}, "actor": {"type": "string"},
     "what": {"type": "string"}, "target": {"type": "string"}, "detail": {"type": "string"}}),
  "MapPoint": obj({"lat": {"type": "number"}, "lon": {"type": "number"}, "label": {"type": "string"}, "asn": {"type": "integer"},
     "network": {"type": "string"}, "first": {"type": "integer"}, "last": {"type": "integer"}, "token_id": {"type": "string"},
     "x": {"type": "number"}, "y": {"type": "number"}}),
  "Jump": obj({"from": {"type": "integer"}, "to": {"type": "integer"}, "km": {"type": "number"}, "hours": {"type": "number"},
     "kmh": {"type": "number", "nullable": True, "description": "null: the two uses overlap in time"}, "impossible": {"type": "boolean"},
     "x1": {"type": "number"}, "y1": {"type": "number"}, "x2": {"type": "number"}, "y2": {"type": "number"}, "mx": {"type": "number"}, "my": {"type": "number"}}),
  "Device": obj({"id": {"type": "string"}, "scripting": {"type": "boolean"}, "tls_known": {"type": "boolean"}, "first": {"type": "integer"},
     "last": {"type": "integer"}, "requests": {"type": "integer"}, "user_agents": {"type": "array", "items": {"type": "string"}}, "token_id": {"type": "string"}}),
  "Minute": obj({"ts": {"type": "integer"}, "requests": {"type": "integer"}, "kib": {"type": "integer"}, "errors": {"type": "integer"}, "max_page": {"type": "integer"}}),
  "IncidentDetail": obj({"incident": ref("Incident"), "findings": {"type": "array", "items": ref("Finding")},
     "actions": {"type": "array", "items": ref("Action")}, "deliveries": {"type": "array", "items": ref("Delivery")},
     "map": obj({"points": {"type": "array", "items": ref("MapPoint")}, "jumps": {"type": "array", "items": ref("Jump")}}),
     "devices": {"type": "array", "items": ref("Device")},
     "timeline": obj({"token_id": nstr(), "minutes": {"type": "array", "items": ref("Minute")}})}),
  "Overview": {"type": "object", "required": ["events_total", "findings_total", "incidents_open", "awaiting_approval", "open_by_severity", "hours", "top", "health"],
     "properties": {"events_total": {"type": "integer"}, "findings_total": {"type": "integer"}, "incidents_open": {"type": "integer"},
       "awaiting_approval": {"type": "integer"},
       "events_per_second": {"type": "array", "items": obj({"at_ms": {"type": "integer"}, "events_per_second": {"type": "number"}})},
       "open_by_severity": {"type": "array", "items": obj({"severity": {"type": "string"}, "count": {"type": "integer"}})},
       "hours": {"type": "array", "items": obj({"ts": {"type": "integer"}, "findings": {"type": "integer"}, "incidents": {"type": "integer"}})},
       "top": {"type": "object", "additionalProperties": {"type": "array", "items": obj({"key": {"type": "string"}, "findings": {"type": "integer"}})}},
       "health": {"type": "object", "required": ["kafka_ready", "consumer_lag", "outbox_backlog"], "properties": {
          "kafka_ready": {"type": "boolean"}, "kafka_error": nstr(), "consumer_lag": {"type": "integer"}, "outbox_backlog": {"type": "integer"},
          "endpoints": {"type": "array", "items": {"type": "object"}}, "fuses": {"type": "array", "items": obj({"rule": {"type": "string"}, "tripped_ms": {"type": "integer"}})}}}}},
  "Rules": obj({"dry_run": {"type": "boolean"},
     "detectors": {"type": "array", "items": obj({"kind": {"type": "string"}, "enabled": {"type": "boolean"}, "severity": {"type": "string"}, "cooldown_secs": {"type": "integer"}, "findings_24h": {"type": "integer"}})},
     "rules": {"type": "array", "items": obj({"name": {"type": "string"}, "scope": {"type": "string"}, "actions": {"type": "string"},
        "mode": {"type": "string", "enum": ["observe", "enforce"]}, "mode_set_in_dashboard": {"type": "boolean"}, "budget": {"type": "string"},
        "revoked": {"type": "integer"}, "would_have_revoked": {"type": "integer"}, "alerts": {"type": "integer"}, "awaiting_approval": {"type": "integer"}})}}),
}
def body(schema): return {"required": True, "content": {"application/json": {"schema": schema}}}
paths = {
 "/api/v1/me": {"get": {"summary": "Who am I", "operationId": "me", "responses": resp(ref("Me"), errs=("401",))}},
 "/api/v1/overview": {"get": {"summary": "The overview's numbers", "operationId": "overview", "responses": resp(ref("Overview"), errs=("401",))}},
 "/api/v1/incidents": {"get": {"summary": "Incidents, newest activity first", "operationId": "listIncidents",
    "parameters": [q("q", {"type": "string"}, "part of the incident id, subject or a token id"), q("kind", {"type": "string", "enum": KINDS}),
      q("severity", {"type": "string", "enum": SEV}), q("status", {"type": "string", "enum": STATUS}), q("subject", {"type": "string"}),
      q("client_id", {"type": "string"}), q("from", TIME, "event time: RFC 3339 or epoch milliseconds"), q("to", TIME, "event time: RFC 3339 or epoch milliseconds")] + paging,
    "responses": resp(page(ref("Incident")), errs=("400", "401"))}},
 "/api/v1/incidents/{id}": {"get": {"summary": "One incident: findings, actions, deliveries, map, devices, timeline", "operationId": "getIncident",
    "parameters": [p("id")], "responses": resp(ref("IncidentDetail"), errs=("401", "404"))}},
 "/api/v1/incidents/{id}/status": {"post": {"summary": "Acknowledge, resolve or mark a false positive (responder)", "operationId": "setIncidentStatus",
    "parameters": [p("id")], "requestBody": body(obj({"status": {"type": "string", "enum": ["acknowledged", "resolved", "false_positive"]}, "note": {"type": "string"}}, ["status"])),
    "responses": resp(obj({"incident_id": {"type": "string"}, "status": {"type": "string"}}))}},
 "/api/v1/findings": {"get": {"summary": "Findings, newest first", "operationId": "listFindings",
    "parameters": [q("kind", {"type": "string", "enum": KINDS}), q("token_id", {"type": "string"})] + paging,
    "responses": resp(page(ref("Finding")), errs=("400", "401"))}},
 "/api/v1/actions": {"get": {"summary": "Actions (revocations, alerts), newest first", "operationId": "listActions",
    "parameters": [q("state", {"type": "string", "enum": ACTION_STATES}), q("incident_id", {"type": "string"})] + paging,
    "responses": resp(page(ref("Action")), errs=("400", "401"))}},
 "/api/v1/actions/{id}/approve": {"post": {"summary": "Approve a revocation waiting for approval (responder)", "operationId": "approveAction",
    "parameters": [p("id")], "responses": resp(obj({"action_id": {"type": "string"}, "state": {"type": "string"}}), errs=("401", "403", "404"))}},
 "/api/v1/actions/{id}/reject": {"post": {"summary": "Reject a revocation waiting for approval (responder)", "operationId": "rejectAction",
    "parameters": [p("id")], "responses": resp(obj({"action_id": {"type": "string"}, "state": {"type": "string"}}), errs=("401", "403", "404"))}},
 "/api/v1/tokens/{token_id}/revoke": {"post": {"summary": "Revoke a token by hand (responder); delivered by the outbox", "operationId": "revokeToken",
    "parameters": [p("token_id", "the token id (jti or h:<hash>), never the raw token")],
    "requestBody": body(obj({"reason": {"type": "string"}, "confirm": {"type": "boolean", "enum": [True], "description": "must be true"}})),
    "responses": resp(obj({"action_id": {"type": "string"}, "token_id": {"type": "string"}, "state": {"type": "string"}}), code="202", desc="queued", errs=("400", "401", "403"))}},
 "/api/v1/fuses/{rule}/reset": {"post": {"summary": "Reset a tripped safety fuse (admin)", "operationId": "resetFuse",
    "parameters": [p("rule", "a rule name or `policy`")], "responses": resp(obj({"rule": {"type": "string"}, "tripped": {"type": "boolean"}}), errs=("401", "403", "404"))}},
 "/api/v1/rules": {"get": {"summary": "Detectors and policy rules with their modes and counts", "operationId": "listRules", "responses": resp(ref("Rules"), errs=("401",))}},
 "/api/v1/rules/{name}/mode": {"post": {"summary": "Switch a rule between observe and enforce (admin)", "operationId": "setRuleMode",
    "parameters": [p("name")], "requestBody": body(obj({"mode": {"type": "string", "enum": ["observe", "enforce"]}})),
    "responses": resp(obj({"rule": {"type": "string"}, "mode": {"type": "string"}}))}},
 "/api/v1/audit": {"get": {"summary": "The audit log, newest first", "operationId": "listAudit",
    "parameters": [q("q", {"type": "string"}, "search actor, what, target, detail")] + paging, "responses": resp(page(ref("AuditEntry")), errs=("400", "401"))}},
 "/api/v1/denylist/{token_id}": {"get": {"summary": "Is a token on the gateway deny-list", "operationId": "checkDenylist",
    "parameters": [p("token_id")], "responses": resp(obj({"token_id": {"type": "string"}, "denied": {"type": "boolean"}, "until_ms": nint()}), errs=("401",))}},
}
doc = {"openapi": "3.0.3",
  "info": {"title": "tokenwatch API", "version": "1", "description": "The JSON API behind the tokenwatch dashboard. Authenticate with the dashboard's session cookie (state-changing requests then need the X-CSRF-Token header) or with `Authorization: Bearer <API key>` from [[dashboard.api_keys]]. Tokens appear only by id, never raw."},
  "servers": [{"url": "/"}],
  "security": [{"bearer": []}, {"session": []}],
  "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, "session": {"type": "apiKey", "in": "cookie", "name": "tw_session"}}, "schemas": schemas},
  "paths": paths}
print(json.dumps(doc, indent=1))
