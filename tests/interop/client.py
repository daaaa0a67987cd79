"""Interop client: a Kafka client that is not ours (confluent-kafka) talks to reflex.

Produces JSON and Confluent-wire-format Avro error events (plus one
malformed message) to the input topic, then reads reflex's detections and
dead letters back and prints a JSON summary on stdout.

usage: client.py BROKERS INPUT_TOPIC DETECTIONS_TOPIC DLQ_TOPIC SCHEMA_FILE SCHEMA_ID N
"""
import io
import json
import struct
import sys
import time

import fastavro
from confluent_kafka import Consumer, Producer

brokers, input_topic, det_topic, dlq_topic, schema_file, schema_id, n = sys.argv[1:8]
schema_id, n = int(schema_id), int(n)
schema = fastavro.parse_schema(json.load(open(schema_file)))
t0 = 1767225600000

p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True})
ids = []
for i in range(n):
    eid = f"py-json-{i}"
    ids.append(eid)
    ev = {"id": eid, "time": t0 + i * 1000, "service": "pysvc", "severity": "ERROR",
          "message": f"deploy {i}", "kind": "change", "version": f"v{i}"}
    p.produce(input_topic, key="pysvc", value=json.dumps(ev).encode())
for i in range(n):
    eid = f"py-avro-{i}"
    ids.append(eid)
    rec = {"id": eid, "time": t0 + (n + i) * 1000, "service": "pysvc", "severity": "error",
           "message": f"deploy avro {i}", "kind": "change", "version": f"a{i}",
           "attributes": {"source": "python"}}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, rec)
    p.produce(input_topic, key="pysvc", value=b"\x00" + struct.pack(">I", schema_id) + buf.getvalue())
p.produce(input_topic, key="pysvc", value=b"{this is not an event")
if p.flush(30) != 0:
    sys.exit("producer did not flush")

c = Consumer({"bootstrap.servers": brokers, "group.id": f"pyreader-{time.time()}",
              "auto.offset.reset": "earliest", "fetch.wait.max.ms": 5,
              "enable.auto.commit": False})
c.subscribe([det_topic, dlq_topic])
detections, dlq = [], []
deadline = time.time() + 90
while time.time() < deadline and (len(detections) < len(ids) or not dlq):
    m = c.poll(0.2)
    if m is None or m.error():
        continue
    v = json.loads(m.value())
    if m.topic() == det_topic:
        detections.append(v)
    else:
        dlq.append(v)
c.close()
print(json.dumps({"produced": ids, "detections": detections, "dlq": dlq}))
