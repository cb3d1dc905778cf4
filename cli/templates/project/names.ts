/**
 * The application's name, topics and stores, each declared once as a typed handle: the topology wires them, the
 * processors forward to and read them, and the compiler checks what goes in and comes out. Topics are prefixed
 * with the application, so two applications never share one by accident.
 */
import { store, topic } from 'agent-streams';
import { PageCountType, PageViewType, type PageCount, type PageView } from './schemas/generated/types.ts';

export const application = '{{application}}';

/** Input: one PageView per visit, keyed by page. */
export const pageViews = topic<PageView>(`${application}.page-views`, PageViewType);
/** Output of count-views: the running count of each page, keyed by page. */
export const pageCounts = topic<PageCount>(`${application}.page-counts`, PageCountType);
/** count-views' state: visits so far, per page. */
export const views = store<number>('views');
