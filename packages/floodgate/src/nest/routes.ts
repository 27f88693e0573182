import { MetadataScanner, type ModulesContainer } from '@nestjs/core';

/** What a class's handlers are reached through: which context a request arrives in. */
export type RouteKind = 'controller' | 'gateway' | 'resolver';

/** A class whose methods may be limited, with the name that tells it apart from every other. */
export interface RouteClass {
  readonly type: abstract new (...args: never[]) => unknown;
  readonly kind: RouteKind;
  /** `Module.Class`: the same in every process of the application, and apart for same-named classes. */
  readonly id: string;
  /** Its handlers' names, inherited ones included. */
  readonly methods: readonly string[];
}

// Read by their names, so that finding gateways and resolvers loads neither @nestjs/websockets nor graphql.
const GATEWAY = 'websockets:is_gateway';
const RESOLVER = 'graphql:resolver_type';

interface Wrapper {
  readonly metatype?: unknown;
  readonly isNotMetatype?: boolean;
}

interface ModuleLike {
  readonly metatype?: { readonly name?: string } | null;
  readonly controllers: ReadonlyMap<unknown, Wrapper>;
  readonly providers: ReadonlyMap<unknown, Wrapper>;
}

/**
 * Every controller, WebSocket gateway and GraphQL resolver of the application, each named by its module
 * and its own name. A class registered in two modules is listed once, under the first.
 */
export function routeClasses(modules: ModulesContainer): RouteClass[] {
  const scanner = new MetadataScanner();
  const seen = new Set<unknown>();
  const found: RouteClass[] = [];
  for (const module of (modules as unknown as Map<string, ModuleLike>).values()) {
    const moduleName = module.metatype?.name ?? 'Module';
    const candidates: [Wrapper, RouteKind | undefined][] = [
      ...[...module.controllers.values()].map((w): [Wrapper, RouteKind] => [w, 'controller']),
      ...[...module.providers.values()].map((w): [Wrapper, undefined] => [w, undefined]),
    ];
    for (const [wrapper, given] of candidates) {
      const type = wrapper.metatype;
      if (typeof type !== 'function' || wrapper.isNotMetatype === true || seen.has(type)) continue;
      const kind =
        given ??
        (Reflect.getMetadata(GATEWAY, type) !== undefined
          ? 'gateway'
          : Reflect.getMetadata(RESOLVER, type) !== undefined
            ? 'resolver'
            : undefined);
      if (kind === undefined) continue;
      seen.add(type);
      found.push({
        type: type as RouteClass['type'],
        kind,
        id: `${moduleName}.${type.name}`,
        methods: scanner.getAllMethodNames(type.prototype as object),
      });
    }
  }
  return found;
}

/** The kind of class a context type's handlers belong to. */
export function kindOf(type: 'http' | 'graphql' | 'ws'): RouteKind {
  return type === 'http' ? 'controller' : type === 'ws' ? 'gateway' : 'resolver';
}
