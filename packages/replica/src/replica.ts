/**
 * The replica library entry: a set of namespaces under one data directory.
 *
 *     const replica = await Replica.open({ dataDir, logger });
 *     const ns = await replica.openNamespace('main');
 *     ns.on('snapshot-request', ({ reason }) => …);      // diverged: bootstrap again
 *     await ns.apply(generation, txns);                    // commit, atomically for readers
 *     replica.positions();                                 // HELLO entries
 *
 * Every namespace event is re-emitted here, so a streaming layer can listen
 * once (invariant 7: each namespace has its own worker and queue, and a
 * failure in one never stalls another).
 */
import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { ClosedError, type NamespacePosition, UnknownNamespaceError, assertNamespace } from '@walwire/protocol';
import { type NamespaceEvents, ReplicaNamespace } from './replica-namespace.js';
import { type ReplicaOptions, type ResolvedReplicaOptions, resolveReplicaOptions } from './options.js';

const FORWARDED = ['applied', 'durable', 'apply-delayed', 'diverged', 'snapshot-request', 'failed', 'installed'] as const;

export class Replica extends EventEmitter<NamespaceEvents> {
  readonly options: ResolvedReplicaOptions;
  readonly #namespaces = new Map<string, Promise<ReplicaNamespace>>();
  /** The namespaces whose open has completed, for synchronous lookups in stream order. */
  readonly #opened = new Map<string, ReplicaNamespace>();
  #closed = false;

  private constructor(options: ResolvedReplicaOptions) {
    super();
    this.options = options;
  }

  /** Validates the options and creates the data directory. Opens no namespace. */
  static async open(options: ReplicaOptions): Promise<Replica> {
    const resolved = resolveReplicaOptions(options);
    mkdirSync(resolved.dataDir, { recursive: true });
    return new Replica(resolved);
  }

  /**
   * Opens a namespace (once; later calls return the same instance), creating
   * an empty replica database when none exists. See ReplicaNamespace.open.
   */
  openNamespace(name: string): Promise<ReplicaNamespace> {
    if (this.#closed) return Promise.reject(new ClosedError('replica is closed'));
    try {
      assertNamespace(name);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    let opening = this.#namespaces.get(name);
    if (opening === undefined) {
      opening = ReplicaNamespace.open(name, this.options).then((ns) => {
        const emitter = ns as unknown as EventEmitter;
        for (const event of FORWARDED) {
          emitter.on(event, (payload: unknown) => {
            (this as unknown as EventEmitter).emit(event, payload);
          });
        }
        if (this.#namespaces.get(name) === opening) this.#opened.set(name, ns);
        return ns;
      });
      opening.catch(() => this.#namespaces.delete(name));
      this.#namespaces.set(name, opening);
    }
    return opening;
  }

  /** The namespace `name` if its open has completed, else undefined. */
  opened(name: string): ReplicaNamespace | undefined {
    return this.#opened.get(name);
  }

  /** The open namespace `name`; throws UnknownNamespaceError when it is not open. */
  async namespace(name: string): Promise<ReplicaNamespace> {
    const ns = this.#namespaces.get(name);
    if (ns === undefined) throw new UnknownNamespaceError(`namespace ${JSON.stringify(name)} is not open on this replica`);
    return ns;
  }

  /**
   * Closes namespace `name` and forgets it (admin API remove). Its files
   * stay: opening it again resumes from its cursor. Other namespaces are
   * untouched.
   */
  async removeNamespace(name: string): Promise<void> {
    const ns = this.#namespaces.get(name);
    if (ns === undefined) throw new UnknownNamespaceError(`namespace ${JSON.stringify(name)} is not open on this replica`);
    this.#namespaces.delete(name);
    this.#opened.delete(name);
    await (await ns).close();
  }

  /** Names of the namespaces opened so far. */
  get namespaceNames(): readonly string[] {
    return [...this.#namespaces.keys()].sort();
  }

  /** Every open namespace's position, for HELLO. */
  async positions(): Promise<NamespacePosition[]> {
    const all = await Promise.allSettled([...this.#namespaces.values()]);
    return all.flatMap((r) => (r.status === 'fulfilled' && r.value.state !== 'closed' ? [r.value.helloPosition] : []));
  }

  /** Closes every namespace. Database descriptors stay open for the process lifetime. */
  async close(): Promise<void> {
    this.#closed = true;
    const all = await Promise.allSettled([...this.#namespaces.values()]);
    await Promise.all(all.map((r) => (r.status === 'fulfilled' ? r.value.close() : undefined)));
    this.#namespaces.clear();
    this.#opened.clear();
  }
}
