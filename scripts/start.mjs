// `npm start`: runs the main job on an embedded default. Until the streaming
// layer lands there is no primary↔replica connection to run, so this prints
// what exists and exits cleanly (exit code 0).
import { PROTOCOL_VERSION } from '@walwire/protocol';

console.log(`walwire (protocol v${PROTOCOL_VERSION})`);
console.log('The streaming demo (a primary and a replica as two processes with live lag) is not built yet.');
console.log('Available now: the protocol package, SQLite format core, and the test suite (npm test).');
