/**
 * Snapshot install on a replica (bootstrap, generation change): the whole
 * database is replaced as one journal transaction. kill -9 at every step of
 * the install while a reader process checks the bank invariant: after each
 * restart the database is byte-for-byte either the old image at the old
 * position or the new image at the new position, never anything else, and
 * the reader never sees a violation. A fresh namespace (no database file)
 * installs by linking the staged image in: kill -9 at each of its steps
 * leaves either no database or the whole image.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DatabaseChecksum, crc32, parseDatabaseHeader } from '@walwire/protocol';
import {
  captureSource,
  diffImages,
  integrityCheck,
  makeTempDir,
  readReplicaImage,
  saveTxns,
  spawnFixture,
  spawnInvariantReader,
  sqliteImageAt,
  useHarness,
} from './harness/index.js';

useHarness();

const GEN_A = 'a'.repeat(32);
const GEN_B = 'b'.repeat(32);

describe('snapshot install', () => {
  it('survives kill -9 at every install step: old image or new image, nothing between', async () => {
    const a = await captureSource({ bank: { accounts: 150, txns: 20, seed: 1, padBytes: 400 } });
    const b = await captureSource({ bank: { accounts: 150, txns: 45, seed: 2, padBytes: 400 } });
    const dir = makeTempDir();
    const txnsFile = join(dir, 'a.txns');
    saveTxns(txnsFile, a.txns);
    const imageB = await sqliteImageAt(b, b.txns.length);
    const imagePath = join(dir, 'b.img');
    writeFileSync(imagePath, imageB);
    const pageSize = parseDatabaseHeader(imageB).pageSize;
    const sum = new DatabaseChecksum();
    sum.addImage(imageB, pageSize);
    expect(sum.value).toBe(b.txns.at(-1)!.checksum);
    const image = { generation: GEN_B, seq: b.txns.length, checksum: sum.value, pageSize, pageCount: imageB.length / pageSize, imagePath };
    const dataDir = join(dir, 'replica');
    const dbPath = join(dataDir, 'main', 'db.sqlite');
    const run = (failpoints: string) =>
      spawnFixture('replica-installer', [JSON.stringify({ dataDir, txnsFile, genA: GEN_A, image })], { env: { WALWIRE_FAILPOINTS: failpoints } });

    const first = run('');
    await first.succeeded();
    expect(first.lines).toEqual(['recovered null 0 at-cursor', `applied ${a.txns.length}`, `installed ${GEN_B} ${b.txns.length}`]);
    expect(diffImages(readReplicaImage(dbPath), imageB).pages).toEqual([]);

    // Start over with generation A applied, then crash inside each install step.
    const kills = [
      'replica.install.after-pending-cursor=kill',
      'replica.install.after-journal=kill',
      'replica.install.mid-pages=kill@1',
      'replica.install.before-journal-delete=kill',
      'replica.install.after-commit-before-cursor=kill',
    ];
    const outcomes: string[] = [];
    for (const kill of kills) {
      const fresh = join(dir, `replica-${outcomes.length}`);
      const freshDb = join(fresh, 'main', 'db.sqlite');
      const go = (fp: string) =>
        spawnFixture('replica-installer', [JSON.stringify({ dataDir: fresh, txnsFile, genA: GEN_A, image })], { env: { WALWIRE_FAILPOINTS: fp } });
      const child = go(kill);
      await child.waitForLine(/^applied/);
      const reader = spawnInvariantReader(freshDb, 5000);
      await reader.waitForLine(/^ready$/);
      const status = await child.exited;
      expect(status.signal).toBe('SIGKILL');
      const restart = go('');
      await restart.succeeded();
      const recovered = restart.lines[0]!;
      outcomes.push(`${kill} → ${recovered}`);
      // Recovery lands on exactly one of the two states.
      if (recovered.startsWith(`recovered ${GEN_A}`)) {
        expect(recovered).toBe(`recovered ${GEN_A} ${a.txns.length} at-cursor`);
      } else {
        expect(recovered).toBe(`recovered ${GEN_B} ${b.txns.length} installed-pending`);
      }
      expect(diffImages(readReplicaImage(freshDb), imageB).pages).toEqual([]);
      expect(integrityCheck(freshDb)).toBe('ok');
      await reader.terminate();
      expect(reader.lines.filter((l) => l.startsWith('violation'))).toEqual([]);
    }
    // Every kill before the journal delete recovers the old image (its full checksum
    // verified at start-up); the kill after the commit point recovers the new one.
    expect(outcomes).toEqual([
      ...kills.slice(0, 4).map((k) => `${k} → recovered ${GEN_A} ${a.txns.length} at-cursor`),
      `${kills[4]} → recovered ${GEN_B} ${b.txns.length} installed-pending`,
    ]);
  }, 120_000);

  it('a fresh namespace installs by link; kill -9 at every link step leaves no database or the whole image', async () => {
    const b = await captureSource({ bank: { accounts: 150, txns: 45, seed: 2, padBytes: 400 } });
    const dir = makeTempDir();
    const imageB = await sqliteImageAt(b, b.txns.length);
    const pageSize = parseDatabaseHeader(imageB).pageSize;
    const chunkPages = 4;
    const chunkCrcs: number[] = [];
    for (let at = 0; at < imageB.length; at += chunkPages * pageSize) chunkCrcs.push(crc32(imageB.subarray(at, at + chunkPages * pageSize)));
    const sum = new DatabaseChecksum();
    sum.addImage(imageB, pageSize);
    // Where the replica daemon stages it, so that a restart's clean-up of a
    // staged image still linked to the database is exercised too.
    const spec = (dataDir: string) => ({
      dataDir,
      txnsFile: '',
      genA: GEN_A,
      fresh: true,
      image: { generation: GEN_B, seq: b.txns.length, checksum: sum.value, pageSize, pageCount: imageB.length / pageSize, imagePath: join(dataDir, 'main', 'staging', 'image'), chunkPages, chunkCrcs },
    });
    const stage = (dataDir: string): void => {
      mkdirSync(join(dataDir, 'main', 'staging'), { recursive: true });
      writeFileSync(join(dataDir, 'main', 'staging', 'image'), imageB);
    };
    const go = (dataDir: string, fp: string) => spawnFixture('replica-installer', [JSON.stringify(spec(dataDir))], { env: { WALWIRE_FAILPOINTS: fp } });

    const clean = join(dir, 'replica');
    stage(clean);
    const first = go(clean, '');
    await first.succeeded();
    expect(first.lines).toEqual(['recovered null 0 at-cursor', `installed ${GEN_B} ${b.txns.length}`]);
    expect(diffImages(readReplicaImage(join(clean, 'main', 'db.sqlite')), imageB).pages).toEqual([]);
    expect(existsSync(join(clean, 'main', 'staging', 'image'))).toBe(false);

    const kills = [
      'replica.install.link.after-patch=kill',
      'replica.install.link.after-pending-cursor=kill',
      'replica.install.link.after-link=kill',
      'replica.install.link.before-cursor=kill',
    ];
    const outcomes: string[] = [];
    for (const kill of kills) {
      const fresh = join(dir, `replica-${outcomes.length}`);
      const freshDb = join(fresh, 'main', 'db.sqlite');
      stage(fresh);
      const reader = spawnInvariantReader(freshDb, 5000);
      await reader.waitForLine(/^ready$/);
      const child = go(fresh, kill);
      const status = await child.exited;
      expect(status.signal).toBe('SIGKILL');
      const committed = existsSync(freshDb);
      // Before the commit point the staged image may be patched already (its
      // chunk 0 then fails its CRC): the daemon would fetch it again.
      if (!committed) stage(fresh);
      const restart = go(fresh, '');
      await restart.succeeded();
      outcomes.push(`${kill} → ${restart.lines[0]!}`);
      expect(diffImages(readReplicaImage(freshDb), imageB).pages).toEqual([]);
      expect(integrityCheck(freshDb)).toBe('ok');
      expect(existsSync(join(fresh, 'main', 'staging', 'image'))).toBe(false);
      await reader.terminate();
      expect(reader.lines.filter((l) => l.startsWith('violation'))).toEqual([]);
    }
    expect(outcomes).toEqual([
      ...kills.slice(0, 2).map((k) => `${k} → recovered null 0 at-cursor`),
      ...kills.slice(2).map((k) => `${k} → recovered ${GEN_B} ${b.txns.length} installed-pending`),
    ]);
  }, 120_000);
});
