// node's simple-hl7 server as its README shows it: app.use(...) answering each message with the
// ACK the library builds (res.ack, MSA-2 = the message's MSH-10) via res.end().
// usage: node server.js PORT_FILE   (listens on port 0, writes the port it got to PORT_FILE)
"use strict";
const fs = require("fs");
const net = require("net");
const hl7 = require("simple-hl7");

// simple-hl7's start() takes only a port and would listen on every interface; the benchmark stays on
// loopback, so a bare port becomes (port, "127.0.0.1").
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (port, ...rest) {
  return typeof port === "number" && rest.length === 0
    ? listen.call(this, port, "127.0.0.1")
    : listen.call(this, port, ...rest);
};

const app = hl7.tcp();
app.use(function (req, res, next) {
  res.end();
});
app.use(function (err, req, res, next) {
  console.error(err);
  process.exit(1);
});
const server = app.start(0);
server.server.on("listening", function () {
  fs.writeFileSync(process.argv[2], String(server.server.address().port));
});
