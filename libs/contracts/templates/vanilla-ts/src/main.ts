import './style.css';
import { setupCounter } from './counter.ts';

document.querySelector<HTMLDivElement>('#app')!.innerHTML = `
  <main class="app">
    <h1>Hello from Velocity Preview</h1>
    <p class="lead">Edit src/main.ts and watch this page update.</p>
    <button id="counter" type="button"></button>
  </main>
`;

setupCounter(document.querySelector<HTMLButtonElement>('#counter')!);
