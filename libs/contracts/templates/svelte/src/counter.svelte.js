// The count lives in a module of its own: Svelte 5's HMR remounts an edited
// component and resets its local $state, but does not run this module again,
// so the count survives edits to App.svelte.
export const counter = $state({ count: 0 });
