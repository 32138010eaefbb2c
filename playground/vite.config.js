import { defineConfig } from 'vite';

// One JS file and one CSS file with fixed names: the server embeds them (src/http/playground.rs),
// so nothing is fetched from a CDN and the routes never change between builds.
export default defineConfig({
  base: '/playground/',
  esbuild: { jsx: 'automatic' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsInlineLimit: 100000,
    chunkSizeWarningLimit: 5000,
    rollupOptions: {
      // Radix UI marks its modules "use client" (a React Server Components hint): meaningless here.
      onwarn(warning, warn) {
        if (warning.code !== 'MODULE_LEVEL_DIRECTIVE') warn(warning);
      },
      output: {
        inlineDynamicImports: true,
        entryFileNames: 'playground.js',
        assetFileNames: 'playground[extname]',
      },
    },
  },
});
