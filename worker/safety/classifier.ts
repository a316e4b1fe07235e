import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import sharp from 'sharp';

/** Scores of one image; nsfwScore = Porn + Hentai + ½ Sexy, in 0..1. */
export interface Classification {
  nsfwScore: number;
  top: string;
  scores: Record<string, number>;
}

export interface ImageClassifier {
  /** TensorFlow.js backend in use (wasm or cpu). */
  readonly backend: string;
  classify(png: Buffer): Promise<Classification>;
}

const SIZE = 224;
let loading: Promise<ImageClassifier> | undefined;

/**
 * WebAssembly (SIMD) runs MobileNet about 20-40× faster than the pure-JS CPU backend; its .wasm
 * files ship inside the npm package, so nothing is fetched. CPU stays as the fallback.
 */
async function useFastestBackend(tf: typeof import('@tensorflow/tfjs')): Promise<void> {
  tf.enableProdMode();
  const ok = await withoutNewProcessListeners(async () => {
    try {
      const wasm = await import('@tensorflow/tfjs-backend-wasm');
      const dir = dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm'));
      wasm.setWasmPaths(`${dir}/`);
      if (!(await tf.setBackend('wasm'))) return false;
      await tf.ready();
      return true;
    } catch {
      return false;
    }
  });
  if (ok) return;
  await tf.setBackend('cpu');
  await tf.ready();
}

/**
 * The Emscripten runtime behind the WASM backend installs process listeners that rethrow every
 * uncaught exception and unhandled rejection, which would turn any stray rejection into a crash
 * (and defeat graceful shutdown); they are removed again once the backend is up.
 */
async function withoutNewProcessListeners<T>(fn: () => Promise<T>): Promise<T> {
  const exceptions = new Set(process.listeners('uncaughtException'));
  const rejections = new Set(process.listeners('unhandledRejection'));
  try {
    return await fn();
  } finally {
    for (const l of process.listeners('uncaughtException')) if (!exceptions.has(l)) process.removeListener('uncaughtException', l);
    for (const l of process.listeners('unhandledRejection')) if (!rejections.has(l)) process.removeListener('unhandledRejection', l);
  }
}

/**
 * nsfwjs with its bundled MobileNetV2 weights on TensorFlow.js (WebAssembly, else or with `cpu`
 * the pure-JS CPU backend): nothing is downloaded and no native addon is needed. Loaded once per
 * thread (the weights are read-only); the first call decides the backend.
 */
export function loadNsfwClassifier(backend: 'auto' | 'cpu' = 'auto'): Promise<ImageClassifier> {
  loading ??= (async () => {
    const tf = await import('@tensorflow/tfjs');
    const nsfwjs = await import('nsfwjs');
    if (backend === 'cpu') {
      tf.enableProdMode();
      await tf.setBackend('cpu');
      await tf.ready();
    } else await useFastestBackend(tf);
    const model = await nsfwjs.load('MobileNetV2');
    return {
      backend: tf.getBackend(),
      async classify(png: Buffer): Promise<Classification> {
        const { data } = await sharp(png).resize(SIZE, SIZE, { fit: 'fill' }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
        const input = tf.tensor3d(new Int32Array(data), [SIZE, SIZE, 3], 'int32');
        try {
          const predictions = await model.classify(input, 5);
          const scores = Object.fromEntries(predictions.map((p) => [p.className, p.probability]));
          const nsfwScore = Math.min(1, (scores.Porn ?? 0) + (scores.Hentai ?? 0) + 0.5 * (scores.Sexy ?? 0));
          return { nsfwScore, top: predictions[0]?.className ?? 'unknown', scores };
        } finally {
          input.dispose();
        }
      },
    };
  })();
  loading.catch(() => (loading = undefined));
  return loading;
}

/** A classifier that always returns one score: the seam tests use to exercise the blocking path. */
export function fixedClassifier(nsfwScore: number): ImageClassifier {
  return {
    backend: 'fixed',
    classify: async () => ({ nsfwScore, top: nsfwScore >= 0.5 ? 'Porn' : 'Neutral', scores: { Porn: nsfwScore, Neutral: 1 - nsfwScore } }),
  };
}
