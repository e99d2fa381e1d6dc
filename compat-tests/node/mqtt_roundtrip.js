// mqtt.js round trip for the RapidMQ compat suite.
// Usage: node mqtt_roundtrip.js HOST PORT PROTOCOL_VERSION TOPIC_PREFIX CLIENT_ID_SUFFIX
// Subscribes to PREFIX/#, publishes one message at each QoS (MQTT 5 adds user
// properties and a content type) and prints what came back as one JSON line.
"use strict";
const mqtt = require("mqtt");

const [host, port, version, prefix, suffix] = process.argv.slice(2);
const protocolVersion = Number(version);
const timer = setTimeout(() => fail("timed out"), 5000);

function fail(why) {
  console.error(why);
  process.exit(1);
}

const options = {
  host,
  port: Number(port),
  protocolVersion,
  clientId: `js-${suffix}`,
  clean: true,
  reconnectPeriod: 0,
  connectTimeout: 5000,
};
const client = mqtt.connect(options);
const got = [];
let finished = false;
client.on("error", (err) => {
  // A reset while closing after the last message is not a failure of the broker.
  if (!finished) fail(`error: ${err.message}`);
});
client.on("message", (topic, payload, packet) => {
  const props = packet.properties || {};
  got.push({
    topic,
    payload: payload.toString(),
    qos: packet.qos,
    retain: packet.retain,
    userProperties: props.userProperties || null,
    contentType: props.contentType || null,
  });
  if (got.length === 3) {
    finished = true;
    clearTimeout(timer);
    console.log(JSON.stringify(got));
    // Let the QoS 2 flow of the last message complete, then leave cleanly.
    setTimeout(() => client.end(false, {}, () => process.exit(0)), 100);
  }
});
client.on("connect", (connack) => {
  client.subscribe(`${prefix}/#`, { qos: 2 }, (err, granted) => {
    if (err) fail(`subscribe: ${err.message}`);
    if (granted[0].qos !== 2) fail(`granted ${JSON.stringify(granted)}`);
    for (const qos of [0, 1, 2]) {
      const opts = { qos };
      if (protocolVersion === 5) {
        opts.properties = { userProperties: { n: String(qos) }, contentType: "text/plain" };
      }
      client.publish(`${prefix}/q${qos}`, `qos${qos}`, opts);
    }
  });
});
