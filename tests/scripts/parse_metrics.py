#!/usr/bin/env python3
"""Parse Prometheus text (from a URL argument, or stdin) with the reference Python client's parser
and print what it understood as JSON: {family: {"type": ..., "samples": [[name, labels, value]]}}.
A parse error exits non-zero with the parser's message."""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

if len(sys.argv) > 1:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as response:
        content_type = response.headers.get("Content-Type", "")
        text = response.read().decode("utf-8")
else:
    content_type = ""
    text = sys.stdin.read()

families = {}
for family in text_string_to_metric_families(text):
    families[family.name] = {
        "type": family.type,
        "samples": [[s.name, s.labels, s.value] for s in family.samples],
    }
print(json.dumps({"content_type": content_type, "families": families}))
