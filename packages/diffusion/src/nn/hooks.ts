/**
 * Per-model registry behind the HookedModel contract: which attention
 * processor each attention module uses, and who observes which attention
 * modules and blocks. Lookups are by exact path and cached, so a forward with
 * no hooks pays one map lookup per module.
 */
import { matchesTargetModules, type AttentionObserver, type AttentionProcessor, type FeatureObserver, type TargetModules } from "@apt/core";

interface Registration<T> {
  target: TargetModules;
  fn: T;
}

export class HookRegistry {
  private processors = new Map<string, AttentionProcessor>();
  private attention: Registration<AttentionObserver>[] = [];
  private features: Registration<FeatureObserver>[] = [];
  private attentionCache = new Map<string, AttentionObserver[]>();
  private featureCache = new Map<string, FeatureObserver[]>();

  setProcessor(path: string, processor: AttentionProcessor): void {
    this.processors.set(path, processor);
  }

  resetProcessors(): void {
    this.processors.clear();
  }

  processorFor(path: string): AttentionProcessor | undefined {
    return this.processors.get(path);
  }

  addAttentionObserver(target: TargetModules, fn: AttentionObserver): () => void {
    const reg = { target, fn };
    this.attention.push(reg);
    this.attentionCache.clear();
    return () => {
      this.attention = this.attention.filter((r) => r !== reg);
      this.attentionCache.clear();
    };
  }

  addFeatureObserver(target: TargetModules, fn: FeatureObserver): () => void {
    const reg = { target, fn };
    this.features.push(reg);
    this.featureCache.clear();
    return () => {
      this.features = this.features.filter((r) => r !== reg);
      this.featureCache.clear();
    };
  }

  attentionObserversFor(path: string): AttentionObserver[] {
    let list = this.attentionCache.get(path);
    if (!list) {
      list = this.attention.filter((r) => matchesTargetModules(path, r.target)).map((r) => r.fn);
      this.attentionCache.set(path, list);
    }
    return list;
  }

  featureObserversFor(path: string): FeatureObserver[] {
    let list = this.featureCache.get(path);
    if (!list) {
      list = this.features.filter((r) => matchesTargetModules(path, r.target)).map((r) => r.fn);
      this.featureCache.set(path, list);
    }
    return list;
  }
}
