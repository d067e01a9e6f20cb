// JsSIP (npm `jssip`, the SIP-over-WebSocket library of browser apps) run
// in Node with `jssip-node-websocket`: registers IDENTITY at the appliance
// with the access token as a bearer, as an app would with
// `registrator().setExtraHeaders`, prints each registration event as a
// line, unregisters when its stdin closes.
//
// usage: node jssip_register.js WSS_URL CA_FILE IDENTITY TOKEN
'use strict';
const fs = require('fs');
const JsSIP = require('jssip');
const NodeWebSocket = require('jssip-node-websocket');

const [url, caFile, identity, token] = process.argv.slice(2);
const host = new URL(url).hostname;
const socket = new NodeWebSocket(url, { clientConfig: { tlsOptions: { ca: fs.readFileSync(caFile) } } });
const ua = new JsSIP.UA({ sockets: [socket], uri: `sip:${identity}@${host}`, register: false });
ua.registrator().setExtraHeaders([`Authorization: Bearer ${token}`]);

ua.on('connected', () => ua.register());
ua.on('registered', (e) => console.log(`registered ${e.response.status_code}`));
ua.on('unregistered', () => {
  console.log('unregistered');
  ua.stop();
  setTimeout(() => process.exit(0), 200);
});
ua.on('registrationFailed', (e) => {
  console.log(`registrationFailed ${e.response ? e.response.status_code : e.cause}`);
  ua.stop();
  setTimeout(() => process.exit(0), 200);
});
process.stdin.on('end', () => ua.unregister());
ua.start();
process.stdin.resume();
