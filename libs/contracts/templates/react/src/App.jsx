import { useState } from 'react';

export default function App() {
  const [count, setCount] = useState(0);

  return (
    <main className="app">
      <h1>Hello from Velocity Preview</h1>
      <p className="lead">Edit src/App.jsx and watch this page update.</p>
      <button type="button" onClick={() => setCount((n) => n + 1)}>
        count is {count}
      </button>
    </main>
  );
}
