/**
 * A loopback TCP port free at the time of the call (bound to port 0, then released), for servers
 * that take a port number rather than reporting the one they bound (nats-server cluster routes,
 * ZMQ endpoints).
 */
import { createServer } from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
